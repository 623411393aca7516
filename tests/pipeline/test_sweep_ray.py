"""`sweep --executor ray` on the reduced organism, on a local Ray the command starts with 2 CPUs: the same winner
and selection-split numbers as the local executor; a killed worker's candidate is retried once, then recorded as
failed. Skipped when ray is not installed (pip install 'realignkit[ray]')."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from realignkit.pipeline.executors import ExecutorOptions  # noqa: E402
from realignkit.pipeline.sweep import run_sweep  # noqa: E402
from realignkit.pipeline.sweep_config import build_config  # noqa: E402

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
GRIDS = {"interpolate": {"alpha": [0.2, 0.5]}, "resta": {"beta": [1.0]}}
# The rules-only judge: these tests are about where the work runs, and the default judge's probe would load its
# feature model once more in every fresh Ray worker.
SMALL = {"limit": 6, "max_new_tokens": 16, "judge": "rules"}
COMPARED = ("harmful_rate", "over_refusal_rate", "utility", "utility_by_suite", "utility_retained", "degenerate_rate",
            "n", "items", "fingerprint")


def _config(lab: Path):
    return build_config({"aligned": str(lab / "aligned"), "tuned": str(lab / "harmful-mix-0.1-full"),
                         "base": str(lab / "base"), "methods": list(GRIDS), "grids": GRIDS, **SMALL})


def _by_label(summary) -> dict[str, dict]:
    return {c["label"]: c for c in summary["candidates"]}


@pytest.fixture(scope="module")
def local_run(sweep_lab, tmp_path_factory):
    return run_sweep(_config(sweep_lab), tmp_path_factory.mktemp("sweep-local") / "out", progress=False)


@pytest.fixture(scope="module")
def local_sweep(local_run):
    return local_run.summary


def _half_done(local_out: Path, out: Path, label: str) -> None:
    """An unfinished run in `out`: the local run's arguments and one finished candidate (the resume rule)."""
    partial = out.with_name(out.name + ".partial")
    (partial / "candidates").mkdir(parents=True)
    shutil.copy(local_out / "run.json", partial / "run.json")
    for state in (local_out / "candidates").glob("*.json"):
        if json.loads(state.read_text()).get("label") == label:
            shutil.copy(state, partial / "candidates" / state.name)


def test_ray_executor_gives_the_local_executors_sweep(sweep_lab, local_run, local_sweep, tmp_path):
    out = tmp_path / "ray"
    _half_done(local_run.out, out, "resta(beta=1)")  # resumed across executors: 2 evaluated on Ray, 1 skipped
    command = [sys.executable, "-m", "realignkit.cli", "sweep", "--aligned", str(sweep_lab / "aligned"),
               "--tuned", str(sweep_lab / "harmful-mix-0.1-full"), "--base", str(sweep_lab / "base"),
               "--methods", "interpolate,resta", "--grid", "interpolate.alpha=0.2,0.5", "--grid", "resta.beta=1.0",
               "--limit", "6", "--max-new-tokens", "16", "--judge", "rules", "--no-progress", "--executor", "ray",
               "--ray-num-cpus", "2",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ray: started a local Ray instance (2 CPUs)" in result.stdout
    assert "2 evaluated, 1 resumed from an earlier run" in result.stdout
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["execution"]["name"] == "ray" and local_sweep["execution"] == {"name": "local"}
    assert summary["winner"]["id"] == local_sweep["winner"]["id"] is not None
    assert summary["judge"] == local_sweep["judge"] and summary["judge"]["name"] == "rules"
    ours, theirs = _by_label(summary), _by_label(local_sweep)
    assert set(ours) == set(theirs) == {"interpolate(alpha=0.2)", "interpolate(alpha=0.5)", "resta(beta=1)"}
    for label, row in ours.items():
        assert row.get("attempts", 1) == 1 and ("attempts" in row) == (label != "resta(beta=1)")
        for key in COMPARED:
            assert row["selection"][key] == theirs[label]["selection"][key], (label, key)
    for role in ("aligned", "tuned"):
        for key in ("harmful_rate", "over_refusal_rate", "utility", "items"):
            assert summary["references"][role]["selection"][key] == local_sweep["references"][role]["selection"][key]
    for key in ("harmful_rate", "over_refusal_rate", "utility_retained", "items"):
        assert summary["winner"]["test"][key] == local_sweep["winner"]["test"][key]
    assert (out / "winner" / "config.json").is_file() and not (out.parent / "ray.partial").exists()


class KillPoint:
    """A materialize step that, once the checkpoint is written, reports its worker's pid and waits for the test
    to either kill that worker or let it go on (pickled by value to the Ray workers)."""

    def __init__(self, markers: Path) -> None:
        self.markers = markers

    def __call__(self, candidate, config, dest) -> None:
        from realignkit.pipeline.materialize import materialize as real

        real(candidate, config, dest)
        attempt = len(list(self.markers.glob(f"{candidate.label()}.*.pid"))) + 1
        stem = self.markers / f"{candidate.label()}.{attempt}"
        (stem.parent / f"{stem.name}.pid.tmp").write_text(str(os.getpid()))
        os.replace(stem.parent / f"{stem.name}.pid.tmp", stem.parent / f"{stem.name}.pid")
        deadline = time.time() + 300  # a safety net only: the watcher answers within 50 ms
        while not (stem.parent / f"{stem.name}.go").exists() and time.time() < deadline:
            time.sleep(0.05)


def _kill_or_release(markers: Path, should_kill, stop: threading.Event, killed: list[str]) -> None:
    seen: set[Path] = set()
    while not stop.is_set():
        for pid_file in sorted(set(markers.glob("*.pid")) - seen):
            seen.add(pid_file)
            label, attempt = pid_file.name.removesuffix(".pid").rsplit(".", 1)
            if should_kill(label, int(attempt)):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the Ray worker running that candidate
                killed.append(f"{label}#{attempt}")
            else:
                (markers / f"{label}.{attempt}.go").touch()
        time.sleep(0.05)


def test_a_killed_worker_is_retried_once_then_its_candidate_is_recorded(sweep_lab, local_sweep, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    markers = tmp_path / "markers"
    markers.mkdir()
    retried, lost = "interpolate(alpha=0.5)", "resta(beta=1)"
    killed: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_or_release, daemon=True, args=(
        markers, lambda label, attempt: label == lost or (label == retried and attempt == 1), stop, killed))
    watcher.start()
    try:
        outcome = run_sweep(_config(sweep_lab), tmp_path / "out", progress=False, materialize_fn=KillPoint(markers),
                            executor=ExecutorOptions(name="ray", ray_num_cpus=2))
    finally:
        stop.set()
        watcher.join()
    assert sorted(killed) == sorted([f"{retried}#1", f"{lost}#1", f"{lost}#2"])
    assert not ray.is_initialized()  # the Ray instance this sweep started is gone
    summary = outcome.summary
    rows = _by_label(summary)
    assert rows[retried]["attempts"] == 2 and rows["interpolate(alpha=0.2)"]["attempts"] == 1
    for key in COMPARED:  # the retry starts over and gets the uninterrupted numbers
        assert rows[retried]["selection"][key] == _by_label(local_sweep)[retried]["selection"][key]
    assert lost not in rows and lost not in summary["pareto_front"]
    (record,) = [s for s in summary["skipped"] if s["label"] == lost]
    assert record["attempts"] == 2 and "Ray worker died on all 2 attempts" in record["reason"]
    assert summary["winner"]["id"] in {r["id"] for r in rows.values()}
    assert any(line.startswith(f"ray: {retried} finished on attempt 2") for line in outcome.log)
    assert any(line.startswith(f"ray: {lost} failed") for line in outcome.log)
    (state_file,) = [p for p in (outcome.out / "candidates").glob("resta-*.json")]
    assert json.loads(state_file.read_text())["failed"] == record["reason"].removeprefix("failed: ")


def test_executor_options_are_checked_before_any_work(sweep_lab, tmp_path):
    from realignkit.common import BadInputError

    config = _config(sweep_lab)
    with pytest.raises(BadInputError, match="need --executor ray"):
        run_sweep(config, tmp_path / "a", executor=ExecutorOptions(gpus_per_candidate=1))
    with pytest.raises(BadInputError, match="has its own"):
        run_sweep(config, tmp_path / "b", executor=ExecutorOptions(name="ray", ray_address="auto", ray_num_cpus=2))
    vllm_config = config.model_copy(update={"backend": "vllm"})
    with pytest.raises(BadInputError, match="--gpus-per-candidate 1 or more"):
        run_sweep(vllm_config, tmp_path / "c", executor=ExecutorOptions(name="ray"))
    assert not any(tmp_path.iterdir())
