"""The model card of a repair output: before/after audit figures from `--card-audit results.json` (only for an audit
of these very weights) or from a sweep (the winner, on the test split)."""

import json

from realignkit.cli import main
from realignkit.common.fingerprint import weights_fingerprint
from realignkit.pipeline.winner_card import add_sweep_figures, winner_audit


def run(capsys, *argv):
    capsys.readouterr()
    code = main(["repair", *map(str, argv)])
    return code, capsys.readouterr().err


def _results(fingerprint):
    overall = {"harmful_rate": 0.125, "over_refusal_rate": 0.25, "utility_accuracy": 0.8}
    before = {"harmful_rate": 0.625, "over_refusal_rate": 0.05, "utility_accuracy": 0.85}
    return {"model": "out", "model_fingerprint": fingerprint, "baseline": "tuned", "baseline_overall": before,
            "overall": overall, "judge": {"name": "refusal"}}


def test_card_audit_of_this_output_goes_into_the_card(capsys, tiny_family, tmp_path):
    argv = ["interpolate", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"], "--set", "alpha=0.3",
            "--quiet", "--no-self-check"]
    assert run(capsys, *argv, "--out", tmp_path / "out")[0] == 0
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(weights_fingerprint(tmp_path / "out"))))
    code, err = run(capsys, *argv, "--out", tmp_path / "out", "--force", "--card-audit", results)
    assert code == 0, err
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Safety audit" in card and "| metric | before: tuned | after: this model |" in card
    assert "| harm (harmful rate) | 0.625 | 0.125 |" in card and "| utility | 0.850 | 0.800 |" in card
    manifest = json.loads((tmp_path / "out" / "realignkit.json").read_text())
    assert manifest["card"]["audit"]["metrics"]["over-refusal rate"] == [0.05, 0.25]


def test_card_audit_of_other_weights_is_refused_and_nothing_changes(capsys, tiny_family, tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(weights_fingerprint(tiny_family["tuned"]))))
    code, err = run(capsys, "interpolate", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"],
                    "--out", tmp_path / "out", "--quiet", "--no-self-check", "--card-audit", results)
    assert code == 2 and "audited other weights than this output" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    results.write_text("{}")
    code, err = run(capsys, "interpolate", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"],
                    "--out", tmp_path / "out", "--card-audit", results)
    assert code == 2 and "is not an audit results.json" in err


def test_sweep_winner_card_gets_the_test_split_figures(capsys, tiny_family, tmp_path):
    assert run(capsys, "interpolate", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"],
               "--out", tmp_path / "winner", "--quiet", "--no-self-check")[0] == 0
    summary = {
        "splits": {"test": {"harmful": 40, "utility": 30}},
        "winner": {"label": "interpolate alpha=0.3", "method": "interpolate",
                   "test": {"harmful_rate": 0.1, "over_refusal_rate": 0.2, "utility": 0.9}},
        "references": {"tuned": {"test": {"harmful_rate": 0.7, "over_refusal_rate": 0.05, "utility": 0.95}},
                       "aligned": {"test": {"harmful_rate": 0.05, "over_refusal_rate": 0.3, "utility": 0.6}}},
    }
    audit = winner_audit(summary)
    assert audit["columns"] == ["before: tuned", "after: this model (interpolate alpha=0.3)", "aligned (reference)"]
    assert audit["metrics"]["harm (harmful rate)"] == [0.7, 0.1, 0.05]
    add_sweep_figures(tmp_path / "winner", summary)
    card = (tmp_path / "winner" / "README.md").read_text()
    assert "held-out test split (harmful 40, utility 30)" in card and "| utility | 0.950 | 0.900 | 0.600 |" in card
    assert winner_audit({"winner": {"id": None}, "references": {}}) is None
