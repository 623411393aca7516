"""The one place the sweep calls the repair engine: write one candidate's checkpoint to a directory."""

from __future__ import annotations

from pathlib import Path

from realignkit.pipeline.candidates import Candidate
from realignkit.pipeline.sweep_config import SweepConfig


def materialize(candidate: Candidate, config: SweepConfig, dest: Path) -> None:
    """Run `candidate.method` with its params on the sweep's inputs and write a full model dir at `dest`."""
    from realignkit.methods.engine import RepairOptions, run_repair

    calibration = config.calibration.get(candidate.method)
    run_repair(
        candidate.method,
        dict(candidate.params),
        tuned=[config.tuned],
        aligned=config.aligned,
        out=dest,
        unaligned=config.unaligned if config.unaligned is not None else config.base,
        calibration=calibration,
        # No perplexity self-check: the sweep evaluates every candidate on its suites anyway, and the audit's
        # degenerate-output detector keeps a broken candidate from being picked.
        options=RepairOptions(show_progress=False, self_check=False, device=config.device or "cpu", command="sweep"),
    )
