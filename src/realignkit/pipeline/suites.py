"""Which prompts a sweep asks: the user's `--suite` specs, or, when none is given and `aligned` sits in a lab
dir built by `realignkit lab build`, that lab's suites."""

from __future__ import annotations

from pathlib import Path

from realignkit.common import BadInputError
from realignkit.evaluation.suites import SuiteItem
from realignkit.pipeline.config import SweepConfig

LAB_FILE = "lab.json"


def find_lab_dir(model_dir: Path) -> Path | None:
    """The lab dir holding `model_dir` (its parent with a lab.json), if any."""
    for candidate in (model_dir.parent, model_dir.parent.parent):
        if (candidate / LAB_FILE).is_file() and (candidate / "suites").is_dir():
            return candidate
    return None


def default_suite_specs(config: SweepConfig) -> list[str]:
    lab = find_lab_dir(Path(config.aligned).resolve())
    if lab is None:
        raise BadInputError("no --suite given and --aligned is not inside a lab dir; pass --suite FILE (harmful + utility)")
    return [f"organism:{lab}"]


def load_sweep_items(config: SweepConfig) -> list[SuiteItem]:
    from realignkit.evaluation.suites import load_suites

    specs = config.suites or default_suite_specs(config)
    return load_suites(specs, limit=config.limit, seed=config.seed)
