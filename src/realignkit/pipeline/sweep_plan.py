"""Turn a SweepConfig into a plan: checked candidates, skipped ones with reasons, the two splits, and the argument
set that identifies the run (for resume). Everything here runs before any model is touched, so bad input
fails fast and writes nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realignkit.common import BadInputError, path_fingerprint, weights_fingerprint
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.pipeline.candidates import Candidate, SkippedCandidate, plan_candidates
from realignkit.pipeline.evaluate import split_items
from realignkit.pipeline.sweep_config import SweepConfig
from realignkit.pipeline.sweep_items import load_sweep_items


@dataclass
class SweepPlan:
    candidates: list[Candidate]
    skipped: list[SkippedCandidate]
    splits: dict[str, list[SuiteItem]]
    arguments: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _usable_methods(config: SweepConfig, notes: list[str]) -> list[str]:
    from realignkit.methods.registry import get_method

    usable = []
    has_unaligned = config.unaligned is not None or config.base is not None
    for method in config.methods:
        spec = get_method(method)  # BadInputError with a did-you-mean for unknown names
        if "calibration" in spec.needs and method not in config.calibration:
            notes.append(f"{method}: skipped, no calibration data given (calibration: {{{method}: FILE}})")
            continue
        if "unaligned" in spec.needs and not has_unaligned:
            notes.append(f"{method}: skipped, it needs --base or --unaligned")
            continue
        usable.append(method)
    if not usable:
        raise BadInputError(f"none of the methods {config.methods} can run with these inputs: {'; '.join(notes)}")
    return usable


def _check_params(candidates: list[Candidate]) -> None:
    from realignkit.methods.registry import get_method

    for candidate in candidates:
        get_method(candidate.method).parse_params(candidate.params)


def _items_digest(items: list[SuiteItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _arguments(config: SweepConfig, items: list[SuiteItem]) -> dict[str, Any]:
    """What decides the results: settings, input checkpoints' and data files' fingerprints, the suite items."""
    arguments = config.fingerprint_payload()
    arguments["input_fingerprints"] = {
        role: weights_fingerprint(path, config.aligned) if Path(path).is_dir() else path_fingerprint(path)
        for role in ("aligned", "tuned", "base", "unaligned")
        if (path := getattr(config, role)) is not None
    }
    arguments["calibration_fingerprints"] = {k: path_fingerprint(v) for k, v in config.calibration.items()}
    arguments["items"] = _items_digest(items)
    text = json.dumps(arguments, sort_keys=True, default=str)
    return {"arguments": arguments, "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16]}


def make_plan(config: SweepConfig) -> SweepPlan:
    notes: list[str] = []
    methods = _usable_methods(config, notes)
    candidates, skipped = plan_candidates({m: config.grid_for(m) for m in methods})
    _check_params(candidates)
    if not candidates:
        raise BadInputError("every candidate in the grids equals a reference model; widen the grids")
    items = load_sweep_items(config)
    splits = split_items(items, seed=config.seed)
    for name, split in splits.items():
        kinds = {item.kind for item in split}
        if "harmful" not in kinds:
            raise BadInputError(f"the {name} split has no harmful items; the sweep needs a harmful suite")
    return SweepPlan(candidates, skipped, splits, _arguments(config, items), notes)
