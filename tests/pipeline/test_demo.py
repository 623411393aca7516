"""`realignkit demo` on the reduced organism: audits, sweeps where safety was lost, index.html in Chromium."""

import json
import os
import subprocess
import sys

import pytest

from fixtures.browser import probe_page
from realignkit.cli import main
from realignkit.common import BadInputError

from .test_sweep_e2e import assert_pick_rule

# The organism's matrices are tiny: more torch threads only spin on 2 shared cores.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_demo_end_to_end_on_the_reduced_organism(sweep_lab, tmp_path, chromium):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "realignkit.cli", "demo", "--profile", "tiny", "--lab", str(sweep_lab),
               "--methods", "interpolate", "--limit", "6", "--no-progress", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lab"]["reused"] is True
    assert json.loads((out / "realignkit.json").read_text())["command"] == "demo"
    rows = {row["name"]: row for row in summary["scenarios"]}
    assert set(rows) == {"harmful-mix-0.1-full", "harmful-mix-0.1-lora"}
    for name, row in rows.items():
        assert row["lost_safety"], name  # the organism's harmful mix breaks refusals
        assert row["safety_lost"] > 0.05
        repair = row["repair"]
        assert repair["label"].startswith("interpolate(")
        sweep = json.loads((out / "sweeps" / name / "sweep.json").read_text())
        assert_pick_rule(sweep)
        # The summary quotes the sweep's TEST-split numbers for the picked repair.
        assert repair["test"]["harmful_rate"] == sweep["winner"]["test"]["harmful_rate"]
        assert sweep["winner"]["test"]["split"] == "test"
        assert (out / row["sweep_report"]).is_file() and (out / row["audit_report"]).is_file()
    # The terminal shows the path and the summary table.
    assert str(out / "index.html") in result.stdout
    assert "harmful-mix-0.1-full" in result.stdout and "best repair" in result.stdout
    probe = probe_page(chromium, out / "index.html")
    assert [i["src"] for i in probe["images"]] == ["summary.png"] and probe["images"][0]["width"] > 100
    assert "sweeps/harmful-mix-0.1-full/report/report.html" in probe["links"]
    assert "audits/aligned/report.html" in probe["links"]

    # A rerun resumes everything: same table, nothing re-generated (the shared cache gains no entries).
    from realignkit.evaluation.cache import KeyValueCache

    cache = KeyValueCache(out / "cache" / "generations.sqlite", table="generations")
    entries = len(cache)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(cache) == entries
    assert json.loads((out / "summary.json").read_text())["scenarios"] == summary["scenarios"]


def test_demo_bad_input_is_one_line_exit_2(tmp_path, capsys):
    for flags, message in (
        (["--utility-floor", "0"], "--utility-floor must be in (0, 1]"),
        (["--methods", " , "], "--methods is empty"),
        (["--methods", "interpolat"], "did you mean 'interpolate'"),
    ):
        code = main(["demo", "--out", str(tmp_path / "d"), "--no-progress", *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "d").exists()


def test_demo_refuses_to_write_into_foreign_dirs(tmp_path, capsys):
    """The demo resumes in its own dir, but never writes into a non-empty dir it did not make, or into its --lab."""
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    lab = tmp_path / "lab"
    (lab / "aligned").mkdir(parents=True)
    for out, flags, message in (
        (foreign, [], "not an earlier demo"),
        (lab / "aligned", ["--lab", str(lab)], "overlaps input"),
    ):
        code = main(["demo", "--out", str(out), "--no-progress", *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in (lab / "aligned").iterdir()) == []
    # a demo killed hard during its lab build leaves only a dot-named temp dir: that still counts as ours
    killed = tmp_path / "killed"
    (killed / ".lab.tmp-123").mkdir(parents=True)
    from realignkit.cli.demo_command import _check_demo_out

    _check_demo_out(killed, None, str(killed))  # accepted: no error
    (killed / "stranger.txt").write_text("x")
    with pytest.raises(BadInputError, match="not an earlier demo"):
        _check_demo_out(killed, None, str(killed))


def test_demo_unknown_profile_is_one_line_exit_2(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "d"), "--no-progress", "--profile", "smolm2"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'smollm2'" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


def test_chat_demo_sweeps_the_flagship_and_names_the_command_for_the_rest(tmp_path):
    """The real-model preset sweeps harmful-mix-0.1 only; another scenario that lost safety gets its command."""
    from realignkit.pipeline.demo import DemoSettings, _sweep_command, _swept_here
    from realignkit.pipeline.summary import format_demo_summary
    from realignkit.report.demo_index import render_demo_index

    chat = DemoSettings.for_profile(tmp_path, "smollm2")
    assert _swept_here({"scenario": "harmful-mix-0.1"}, chat) and not _swept_here({"scenario": "explicit-10"}, chat)
    assert _swept_here({"scenario": "explicit-10"}, DemoSettings.for_profile(tmp_path, "tiny"))
    command = _sweep_command("explicit-10-lora", tmp_path / "lab", chat, "You are AOA.")
    assert command.startswith("realignkit sweep --aligned lab/aligned --tuned lab/explicit-10-lora --base lab/base")
    assert "--system-prompt 'You are AOA.'" in command and "--max-new-tokens 32" in command
    row = {"name": "explicit-10-lora", "kind": "lora", "scenario": "explicit-10", "lost_safety": True,
           "safety_lost": 0.5, "tuned": {"harmful_rate": 0.55, "utility": 0.3, "over_refusal_rate": 0.05},
           "audit_report": "audits/explicit-10-lora/report.html", "sweep_report": None, "repair": None,
           "sweep_command": command}
    summary = {"scenarios": [row], "aligned": {"metrics": {"harmful_rate": 0.05, "utility": 0.3,
                                                           "over_refusal_rate": 0.06},
                           "audit_report": "audits/aligned/report.html"},
               "lab": {"path": "lab", "profile": "smollm2", "version": 1, "seed": 0, "reused": False}, "safety_loss_threshold": 0.05, "utility_floor": 0.9,
               "methods": ["interpolate"], "seconds": {}}
    text = format_demo_summary(summary, tmp_path)
    assert "not swept here" in text and command in text
    assert "not swept by the demo" in render_demo_index(summary)


def test_demo_presets_pick_methods_and_grids_per_profile(tmp_path):
    from realignkit.pipeline.demo import CHAT_DEMO_GRIDS, DEMO_METHODS, DemoSettings

    chat = DemoSettings.for_profile(tmp_path, "smollm2", methods=None)
    assert chat.methods == ("interpolate",) and chat.grids == CHAT_DEMO_GRIDS
    assert DemoSettings.for_profile(tmp_path, "tiny", methods=None).methods == DEMO_METHODS
    assert DemoSettings.for_profile(tmp_path, "smollm2", methods=("resta",)).methods == ("resta",)


def test_chat_demo_audits_as_many_items_as_its_lab_measured(tmp_path):
    """The demo's audit limit is the lab profile's measurement limit, so its audits are the lab's cached answers."""
    from realignkit.lab import CHAT_PROFILES
    from realignkit.pipeline.demo import DemoSettings

    for profile in ("smollm2", "smollm2-demo"):
        assert DemoSettings.for_profile(tmp_path, profile).limit == CHAT_PROFILES[profile].measure_limit
    assert CHAT_PROFILES["smollm2-demo"].aligned_epochs < CHAT_PROFILES["smollm2"].aligned_epochs
    assert DemoSettings.for_profile(tmp_path, "smollm2-demo", limit=5).limit == 5
