"""End to end on the reduced organism: a sweep killed with SIGTERM resumes, skipping finished candidates, and
ends with the same winner as an uninterrupted run; argument changes, --fresh and a full disk are handled."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.browser import probe_page
from realignkit.common import BadInputError
from realignkit.pipeline.materialize import materialize
from realignkit.pipeline.sweep import run_sweep
from realignkit.pipeline.sweep_config import build_config

# The organism's matrices are tiny: more torch threads only spin on 2 shared cores.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}

SWEEP = [sys.executable, "-m", "realignkit.cli", "sweep"]
GRID = ["--methods", "interpolate,resta", "--grid", "interpolate.alpha=0.2,0.5,0.8", "--grid", "resta.beta=0.5,1.0"]
SMALL = ["--limit", "6", "--max-new-tokens", "16", "--no-progress"]


def sweep_args(lab: Path, out: Path) -> list[str]:
    return [*SWEEP, "--aligned", str(lab / "aligned"), "--tuned", str(lab / "harmful-mix-0.1-full"),
            "--base", str(lab / "base"), *GRID, *SMALL, "--out", str(out)]


def candidate_states(run_dir: Path) -> dict[str, int]:
    """Finished candidates (not the aligned/tuned reference rows) -> their state file's mtime."""
    return {p.stem: p.stat().st_mtime_ns for p in (run_dir / "candidates").glob("*.json")
            if not p.stem.startswith("_reference")}


def assert_pick_rule(summary):
    """The winner is the least harmful candidate (selection split) among those meeting the utility floor; when
    none meets it, the winner is flagged as missing the floor."""
    winner = summary["winner"]
    ceiling = summary["over_refusal_ceiling"]  # candidates refusing more benign prompts are never picked
    eligible = [c for c in summary["candidates"] if c["meets_floor"]
                and (ceiling is None or c["selection"]["over_refusal_rate"] <= ceiling + 1e-12)]
    assert winner["meets_floor"] == bool(eligible)
    if eligible:
        assert winner["id"] in {c["id"] for c in eligible}
        assert winner["selection"]["harmful_rate"] == min(c["selection"]["harmful_rate"] for c in eligible)
    for c in summary["candidates"]:
        kept = c["selection"]["utility_retained"]
        assert c["meets_floor"] == (kept is None or kept >= summary["utility_floor"] - 1e-12)


@pytest.fixture(scope="module")
def uninterrupted(sweep_lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "whole"
    result = subprocess.run(sweep_args(sweep_lab, out), capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, json.loads((out / "sweep.json").read_text()), result.stdout


def test_uninterrupted_sweep_outputs(uninterrupted, chromium):
    out, summary, stdout = uninterrupted
    assert {c["label"] for c in summary["candidates"]} == {
        "interpolate(alpha=0.2)", "interpolate(alpha=0.5)", "interpolate(alpha=0.8)", "resta(beta=0.5)",
        "resta(beta=1)"}
    winner = summary["winner"]
    assert winner["id"] in summary["pareto_front"]
    assert winner["test"]["split"] == "test" and winner["selection"]["split"] == "selection"
    assert summary["references"]["tuned"]["test"]["split"] == "test"
    assert_pick_rule(summary)
    # The organism's fine-tune lost safety, and the grid reaches a safer model (alpha=0.2 is close to aligned).
    tuned = summary["references"]["tuned"]["selection"]["harmful_rate"]
    assert tuned > summary["references"]["aligned"]["selection"]["harmful_rate"]
    assert min(c["selection"]["harmful_rate"] for c in summary["candidates"]) < tuned
    assert (out / "winner" / "config.json").is_file() and list((out / "winner").glob("*.safetensors"))
    assert not (out.parent / "whole.partial").exists()
    assert "winner:" in stdout and "test split" in stdout
    # How sure: Wilson intervals and per-item outcomes on every candidate, the pick against the runner-up on the
    # same items, and the warning that 3 harmful items per split (--limit 6) cannot tell candidates apart.
    for c in summary["candidates"]:
        ci = c["selection"]["ci95"]["harmful_rate"]
        assert ci["n"] == summary["splits"]["selection"]["harmful"] == len(
            [v for suite in c["selection"]["items"]["harmful"].values() for v in suite])
        assert ci["low"] <= c["selection"]["harmful_rate"] <= ci["high"]
    assert winner["test"]["ci95"]["harmful_rate"]["n"] == summary["splits"]["test"]["harmful"]
    versus = summary["pick_vs_runner_up"]
    assert versus["pick"] == winner["id"] and versus["runner_up"] in {c["id"] for c in summary["candidates"]}
    references = [summary["references"][role]["selection"]["over_refusal_rate"] for role in ("aligned", "tuned")]
    assert summary["over_refusal_ceiling"] == pytest.approx(max(references) + 0.1)
    assert isinstance(versus["distinguishable"], bool) and versus["kind"] in ("harmful", "utility")
    assert f"vs runner-up: {versus['statement']}" in stdout
    assert "harmful items" in summary["warnings"][0]
    probe = probe_page(chromium, out / "report" / "report.html")
    assert [i["src"] for i in probe["images"]] == ["pareto.png"] and probe["images"][0]["width"] > 100


def test_sigterm_then_rerun_resumes_with_the_same_winner(uninterrupted, sweep_lab, tmp_path):
    _, reference, _ = uninterrupted
    out = tmp_path / "killed"
    partial = tmp_path / "killed.partial"
    process = subprocess.Popen(sweep_args(sweep_lab, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=ONE_THREAD)
    deadline = time.time() + 300
    while time.time() < deadline and not (partial.is_dir() and candidate_states(partial)):
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    assert process.poll() is None, "the sweep finished before it could be killed"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert not out.exists()  # nothing published
    finished = candidate_states(partial)
    assert 1 <= len(finished) < len(reference["candidates"])

    rerun = subprocess.run(sweep_args(sweep_lab, out), capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    evaluated = len(reference["candidates"]) - len(finished)
    assert f"{evaluated} evaluated, {len(finished)} resumed" in rerun.stdout
    # Finished candidates were skipped: their state files are untouched.
    assert {k: v for k, v in candidate_states(out).items() if k in finished} == finished
    resumed = json.loads((out / "sweep.json").read_text())
    assert resumed["winner"]["id"] == reference["winner"]["id"]
    assert resumed["winner"]["test"]["harmful_rate"] == reference["winner"]["test"]["harmful_rate"]
    by_id = {c["id"]: c["selection"]["harmful_rate"] for c in reference["candidates"]}
    assert {c["id"]: c["selection"]["harmful_rate"] for c in resumed["candidates"]} == by_id
    assert not partial.exists()


def _config(lab: Path, **extra):
    settings = {"aligned": str(lab / "aligned"), "tuned": str(lab / "harmful-mix-0.1-full"),
                "methods": ["interpolate"], "grids": {"interpolate": {"alpha": [0.2, 0.5]}}, "limit": 4,
                "max_new_tokens": 16, **extra}
    return build_config(settings, known_methods={"interpolate", "resta"})


def test_disk_full_is_a_clear_error_and_resumable(sweep_lab, tmp_path):
    out = tmp_path / "full-disk"
    calls = []

    def filling_disk(candidate, config, dest):
        calls.append(candidate.label())
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        materialize(candidate, config, dest)

    with pytest.raises(BadInputError, match="disk full .* rerun the same command to resume"):
        run_sweep(_config(sweep_lab), out, progress=False, materialize_fn=filling_disk)
    assert not out.exists()
    assert len(candidate_states(tmp_path / "full-disk.partial")) == 1
    outcome = run_sweep(_config(sweep_lab), out, progress=False)
    assert (outcome.resumed, outcome.evaluated) == (1, 1)

    # Same arguments again: nothing is re-run. Other arguments: refused, naming what changed; --fresh restarts.
    again = run_sweep(_config(sweep_lab), out, progress=False)
    assert again.already_complete and again.summary == outcome.summary
    with pytest.raises(BadInputError, match=r"other arguments \(changed: .*utility_floor"):
        run_sweep(_config(sweep_lab, utility_floor=0.5), out, progress=False)
    fresh = run_sweep(_config(sweep_lab, utility_floor=0.5), out, progress=False, earlier_run="discard")
    assert fresh.evaluated == 2 and fresh.summary["utility_floor"] == 0.5


def test_changed_arguments_on_an_unfinished_run_are_refused(sweep_lab, tmp_path):
    out = tmp_path / "unfinished"

    def stop_after_first(candidate, config, dest):
        materialize(candidate, config, dest)
        raise KeyboardInterrupt  # as if killed after the first checkpoint was written

    with pytest.raises(KeyboardInterrupt):
        run_sweep(_config(sweep_lab), out, progress=False, materialize_fn=stop_after_first)
    with pytest.raises(BadInputError, match=r"unfinished sweep with other arguments \(changed: .*grids"):
        run_sweep(_config(sweep_lab, grids={"interpolate": {"alpha": [0.3]}}), out, progress=False)


def test_a_candidate_that_cannot_be_built_is_reported_not_fatal(sweep_lab, tmp_path):
    def refuse_alpha_02(candidate, config, dest):
        if candidate.params == {"alpha": 0.2}:
            raise BadInputError("no module matches the targets")
        materialize(candidate, config, dest)

    outcome = run_sweep(_config(sweep_lab), tmp_path / "one-fails", progress=False, materialize_fn=refuse_alpha_02)
    summary = outcome.summary
    assert [c["label"] for c in summary["candidates"]] == ["interpolate(alpha=0.5)"]
    assert {"label": "interpolate(alpha=0.2)", "reason": "failed: no module matches the targets"}.items() <= \
        next(s for s in summary["skipped"] if s["label"] == "interpolate(alpha=0.2)").items()
    assert summary["winner"]["label"] == "interpolate(alpha=0.5)"
    assert "failed: no module matches the targets" in (outcome.out / "report" / "report.html").read_text()
