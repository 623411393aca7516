"""The Python API: `from realignkit import repair, audit, sweep`.

Each function does what its command does (same checks, same outputs, same errors: `BadInputError` where the
command prints one line and exits 2) and returns the result instead of printing it. Models may be local dirs,
hub ids (`org/name`, `org/name@revision`) or `MODEL+LORA`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from realignkit.methods.engine import RepairOptions, RepairResult
    from realignkit.report.schemas import AuditResults, SweepSummary

PathLike = str | os.PathLike[str]


def repair(
    method: str | None = None,
    *,
    aligned: PathLike | None = None,
    tuned: PathLike | Sequence[PathLike] | None = None,
    out: PathLike,
    base: PathLike | None = None,
    unaligned: PathLike | None = None,
    calibration: PathLike | None = None,
    config: PathLike | None = None,
    params: dict[str, Any] | None = None,
    dtype: str | None = None,
    card_audit: PathLike | None = None,
    push_to_hub: str | None = None,
    force: bool = False,
    self_check: bool = True,
    progress: bool = False,
    **method_params: Any,
) -> RepairResult:
    """Repair (or merge) into `out`; returns a `RepairResult` (out, method, parameters, tensors, seconds, extra).

    `config` is a mergekit recipe (it then names method, models and parameters itself) or realignkit's own
    recipe. Method parameters come from `params` and/or keywords: `repair("ties", ..., density=0.3)`.
    """
    from realignkit.checkpoints.hub_push import check_push_possible, push_folder
    from realignkit.methods.engine import RepairOptions, run_repair

    if push_to_hub:
        check_push_possible(push_to_hub)
    options = RepairOptions(dtype=dtype, force=force, show_progress=progress, self_check=self_check,
                            card_audit=card_audit, command="realignkit.repair")
    if config is not None:
        result = _repair_from_config(config, method, aligned, tuned, out, base, unaligned, calibration,
                                     {**(params or {}), **method_params}, options)
    else:
        if method is None:
            raise BadInputError("repair: give a method (e.g. 'ties') or config=recipe.yaml")
        result = run_repair(method, {**(params or {}), **method_params}, tuned=_as_list(tuned), aligned=aligned,
                            out=out, unaligned=unaligned if unaligned is not None else base, calibration=calibration,
                            options=options)
    if push_to_hub:
        result.extra["pushed"] = push_folder(result.out, push_to_hub)
    return result


def _first_given(*values: PathLike | None) -> PathLike | None:
    return next((value for value in values if value is not None), None)


def _as_list(tuned: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if tuned is None:
        return []
    return [tuned] if isinstance(tuned, str | os.PathLike) else list(tuned)


def _repair_from_config(config: PathLike, method: str | None, aligned: PathLike | None, tuned: PathLike | Sequence[PathLike] | None, out: PathLike, base: PathLike | None,
                        unaligned: PathLike | None, calibration: PathLike | None, params: dict[str, Any], options: RepairOptions) -> RepairResult:
    from realignkit.methods.engine import run_repair
    from realignkit.methods.mergekit_recipe import is_mergekit_recipe
    from realignkit.methods.mergekit_run import read_yaml, run_mergekit_recipe
    from realignkit.methods.recipe import load_recipe

    if is_mergekit_recipe(read_yaml(config)):
        if any(v is not None for v in (method, aligned, tuned, base, unaligned, calibration)) or params:
            raise BadInputError("a mergekit recipe names its method, models and parameters itself; pass only config")
        return run_mergekit_recipe(config, out, options)[0]
    recipe = load_recipe(config)
    opts = recipe.options
    options.dtype = options.dtype or opts.dtype
    options.allow_missing = bool(opts.allow_missing)
    options.allow_pickle = bool(opts.allow_pickle)
    name = method or recipe.method
    if not name:
        raise BadInputError(f"recipe {str(config)!r} has no method; pass one")
    return run_repair(name, {**recipe.parameters, **params}, tuned=_as_list(tuned) or recipe.models.tuned,
                      aligned=aligned or recipe.models.aligned,
                      unaligned=_first_given(unaligned or recipe.models.unaligned, base or recipe.models.base),
                      calibration=calibration or recipe.calibration, out=out, options=options)


def audit(
    model: PathLike,
    *,
    suites: Sequence[str],
    out: PathLike | None = None,
    baseline: PathLike | None = None,
    judge: str = "refusal",
    limit: int | None = None,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    aligned: PathLike | None = None,
    force: bool = False,
    progress: bool = False,
) -> AuditResults:
    """Audit `model` (against `baseline`) on `suites`; returns the results dict (results.json when `out` is set)."""
    from realignkit.checkpoints.lora_merge import model_and_base
    from realignkit.evaluation import AuditOptions, BackendOptions, GenerationSettings, audit_model

    model_dir, base_dir = model_and_base(os.fspath(model), _str(aligned), "model", "aligned")
    baseline_dir, baseline_base = model_and_base(_str(baseline), None, "baseline", "baseline_aligned")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    options = AuditOptions(seed=seed, settings=settings, model=BackendOptions(aligned=base_dir),
                           baseline=BackendOptions(aligned=baseline_base), force=force, progress=progress)
    return audit_model(model_dir, list(suites), baseline=baseline_dir, judge=judge, limit=limit, out_dir=out,
                       options=options)


def sweep(
    *,
    aligned: PathLike,
    tuned: PathLike,
    out: PathLike,
    push_to_hub: str | None = None,
    fresh: bool = False,
    progress: bool = False,
    **settings: Any,
) -> SweepSummary:
    """Sweep repair methods and pick the best under the utility floor; returns sweep.json's content.

    Other settings as in a sweep recipe: base, unaligned, methods, grids, utility_floor, suites, limit,
    max_new_tokens, seed, calibration, ... The winner checkpoint is at `out/winner` (with its model card);
    `push_to_hub` uploads it.
    """
    from realignkit.checkpoints.hub_push import check_push_possible, push_folder
    from realignkit.methods.registry import method_names
    from realignkit.pipeline.sweep import run_sweep
    from realignkit.pipeline.sweep_config import build_config

    if push_to_hub:
        check_push_possible(push_to_hub)
    values: dict[str, Any] = {"aligned": os.fspath(aligned), "tuned": os.fspath(tuned), **settings}
    for key in ("base", "unaligned", "methods", "grids"):  # None: not given (the recipe default applies)
        if values.get(key) is None:
            values.pop(key, None)
    values.update({key: os.fspath(values[key]) for key in ("base", "unaligned") if key in values})
    if "methods" in values:
        values["methods"] = list(values["methods"])
    config = build_config(values, known_methods=set(method_names()))
    outcome = run_sweep(config, out, earlier_run="discard" if fresh else "resume", progress=progress)
    winner = Path(outcome.out) / "winner"
    if push_to_hub and (winner / "config.json").is_file():
        outcome.summary["pushed"] = push_folder(winner, push_to_hub)
    return outcome.summary


def _str(value: PathLike | None) -> str | None:
    return None if value is None else os.fspath(value)
