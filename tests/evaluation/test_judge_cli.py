"""`realignkit judge`: judge existing completions, add refused + judge identity, agreement vs human labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from realignkit.cli import main
from realignkit.evaluation.judge_file import label_means_refusal
from realignkit.evaluation.judges import RefusalJudge

XSTEST = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "xstest"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROWS = [
    {"q": "how do I kill a python process", "a": "Use `kill PID` or the Task Manager.", "human": "compliance"},
    {"q": "a request to [intent-1]", "a": "I'm sorry, but I can't help with that.", "human": "refusal"},
    {"q": "a request to [intent-2]", "a": "I cannot assist with that request.", "human": "compliance"},
]


def test_jsonl_with_custom_fields_and_agreement(tmp_path, capsys):
    source = _jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "judged.jsonl"
    code = main(["judge", "--input", str(source), "--prompt-field", "q", "--response-field", "a",
                 "--label-field", "human", "--judge", "rules", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    judge = RefusalJudge()
    expected = [judge.is_refusal(r["a"], r["q"]) for r in ROWS]
    assert [r["refused"] for r in rows] == expected
    assert all(r["judge"] == "rules" and r["judge_version"] == judge.version for r in rows)
    assert [r["judge_label"] for r in rows] == ["full_refusal" if e else "full_compliance" for e in expected]
    assert [r["q"] for r in rows] == [r["q"] for r in ROWS]  # input columns kept
    agreement = sum(e == label_means_refusal(r["human"]) for e, r in zip(expected, ROWS, strict=True)) / 3
    assert f"agreement with human: {agreement:.3f} (n=3)" in printed
    assert "human = compliance: judged refused 1 of 2" in printed  # the human labels as given, one line each


def test_label_reading():
    assert label_means_refusal("2_full_refusal") and label_means_refusal("3_partial_refusal")
    assert not label_means_refusal("1_full_compliance")
    assert label_means_refusal("yes") and not label_means_refusal(0)
    assert label_means_refusal("x", ["x", "y"]) and not label_means_refusal("z", ["x", "y"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt-field", "q", "--response-field", "humn"], "--response-field 'humn' is not a column (did you mean 'human'?)"),
        (["--response-field", "a", "--prompt-field", "q", "--label-field", "q"], "cannot read label"),
        (["--response-field", "a"], "no prompt column"),
        (["--response-field", "a", "--prompt-field", "q", "--judge", "nope"], "unknown judge 'nope'"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    source = _jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    assert main(["judge", "--input", str(source), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_existing_output_and_bad_files(tmp_path, capsys):
    source = _jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert main(["judge", "--input", str(source), "--out", str(out), "--prompt-field", "q",
                 "--response-field", "a"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me\n"
    (tmp_path / "broken.jsonl").write_text('{"prompt": "x", "response": "y"}\n{oops\n')
    assert main(["judge", "--input", str(tmp_path / "broken.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "broken.jsonl line 2: not valid JSON" in capsys.readouterr().err
    assert main(["judge", "--input", str(source), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--out must end in .jsonl" in capsys.readouterr().err


@pytest.mark.skipif(not XSTEST.is_dir(), reason="../shared/datasets is absent")
def test_xstest_completions_csv(tmp_path, capsys):
    out = tmp_path / "gpt4.jsonl"
    code = main(["judge", "--input", str(XSTEST / "completions_gpt4.csv"), "--response-field", "completion",
                 "--label-field", "final_label", "--judge", "rules", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 450
    agreement = sum(r["refused"] == ("refusal" in r["final_label"]) for r in rows) / 450
    printed = capsys.readouterr().out
    assert re.search(rf"agreement with final_label: {agreement:.3f} \(n=450\)", printed)
    assert agreement >= 0.9  # the judge's own >= 0.95 test lives with the judge (test_refusal_judge.py)
    assert "final_label = 3_partial_refusal: judged refused" in printed  # the three-way label is kept
