"""The Python API: `from realignkit import repair, audit, sweep`.

Each function does what its command does (same checks, same outputs, same errors: `BadInputError` where the
command prints one line and exits 2) and returns the result instead of printing it. Models may be local dirs,
hub ids (`org/name`, `org/name@revision`) or `MODEL+LORA`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from realignkit.methods.engine import RepairOptions, RepairResult
    from realignkit.report.schemas import AuditResults, SweepSummary

PathLike = str | os.PathLike[str]
SettingsT = TypeVar("SettingsT", bound=BaseModel)


class RepairSettings(BaseModel):
    """`repair`'s keyword settings besides the models, `out`, a recipe and the method's own parameters."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    base: PathLike | None = Field(None, description="pre-alignment model (the default `unaligned`)")
    unaligned: PathLike | None = Field(None, description="model whose difference from aligned is the safety")
    calibration: PathLike | None = Field(None, description="calibration file (antidote, somf)")
    dtype: str | None = Field(None, description="output dtype (default: the inputs')")
    card_audit: PathLike | None = Field(None, description="an audit's results.json for the model card")
    push_to_hub: str | None = Field(None, description="upload the result to this hub repo")
    force: bool = Field(False, description="replace a non-empty out")
    self_check: bool = Field(True, description="check the repaired model still talks")
    progress: bool = Field(False, description="progress bar")


class AuditSettings(BaseModel):
    """`audit`'s keyword settings besides the model, suites, out and the comparison models."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field("refusal", description="judge deciding refused/harmful")
    limit: int | None = Field(None, ge=1, description="at most N items per suite")
    seed: int = Field(0, description="seed for sampling items")
    max_new_tokens: int = Field(64, ge=1, description="generation length")
    batch_size: int = Field(16, ge=1, description="prompts per generate call")
    force: bool = Field(False, description="replace a non-empty out")
    progress: bool = Field(False, description="progress bars")


def _settings(model: type[SettingsT], values: dict[str, Any], command: str) -> SettingsT:
    """Typed settings from keywords, or one BadInputError line naming the unknown or bad keyword."""
    from pydantic import ValidationError

    from realignkit.common.config import validation_error_line

    try:
        return model(**values)
    except ValidationError as exc:
        raise BadInputError(f"{command}: {validation_error_line(exc, known=model.model_fields, whole=command)}") \
            from None


def repair(
    method: str | None = None,
    *,
    out: PathLike,
    aligned: PathLike | None = None,
    tuned: PathLike | Sequence[PathLike] | None = None,
    config: PathLike | None = None,
    params: dict[str, Any] | None = None,
    **keywords: Any,
) -> RepairResult:
    """Repair (or merge) into `out`; returns a `RepairResult` (out, method, parameters, tensors, seconds, extra).

    `config` is a mergekit recipe (it then names method, models and parameters itself) or realignkit's own
    recipe. Keywords that are `RepairSettings` fields (base, unaligned, calibration, dtype, card_audit,
    push_to_hub, force, self_check, progress) set those; every other keyword is a method parameter, as are the
    entries of `params`: `repair("ties", ..., density=0.3)`. The method's own parameter model rejects unknown ones.
    """
    from realignkit.checkpoints.hub_push import check_push_possible, push_folder
    from realignkit.methods.engine import RepairOptions, run_repair

    given = {key: keywords.pop(key) for key in list(keywords) if key in RepairSettings.model_fields}
    settings = _settings(RepairSettings, given, "repair")
    method_params = {**(params or {}), **keywords}
    if settings.push_to_hub:
        check_push_possible(settings.push_to_hub)
    options = RepairOptions(dtype=settings.dtype, force=settings.force, show_progress=settings.progress,
                            self_check=settings.self_check, card_audit=settings.card_audit,
                            command="realignkit.repair")
    unaligned = settings.unaligned if settings.unaligned is not None else settings.base
    if config is not None:
        models = _RecipeModels(method, aligned, tuned, settings.base, settings.unaligned, settings.calibration)
        result = _repair_from_config(config, models, out, method_params, options)
    else:
        if method is None:
            raise BadInputError("repair: give a method (e.g. 'ties') or config=recipe.yaml")
        result = run_repair(method, method_params, tuned=_as_list(tuned), aligned=aligned, out=out,
                            unaligned=unaligned, calibration=settings.calibration, options=options)
    if settings.push_to_hub:
        result.extra["pushed"] = push_folder(result.out, settings.push_to_hub)
    return result


@dataclass(frozen=True)
class _RecipeModels:
    """What the caller gave besides a recipe file: each overrides the recipe's own entry."""

    method: str | None
    aligned: PathLike | None
    tuned: PathLike | Sequence[PathLike] | None
    base: PathLike | None
    unaligned: PathLike | None
    calibration: PathLike | None

    def any_given(self) -> bool:
        return any(value is not None for value in (self.method, self.aligned, self.tuned, self.base,
                                                   self.unaligned, self.calibration))


def _first_given(*values: PathLike | None) -> PathLike | None:
    return next((value for value in values if value is not None), None)


def _as_list(tuned: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if tuned is None:
        return []
    return [tuned] if isinstance(tuned, str | os.PathLike) else list(tuned)


def _repair_from_config(config: PathLike, given: _RecipeModels, out: PathLike, params: dict[str, Any],
                        options: RepairOptions) -> RepairResult:
    from realignkit.methods.engine import run_repair
    from realignkit.methods.mergekit_recipe import is_mergekit_recipe
    from realignkit.methods.mergekit_run import read_yaml, run_mergekit_recipe
    from realignkit.methods.recipe import load_recipe

    if is_mergekit_recipe(read_yaml(config)):
        if given.any_given() or params:
            raise BadInputError("a mergekit recipe names its method, models and parameters itself; pass only config")
        return run_mergekit_recipe(config, out, options)[0]
    recipe = load_recipe(config)
    opts = recipe.options
    options.dtype = options.dtype or opts.dtype
    options.allow_missing = bool(opts.allow_missing)
    options.allow_pickle = bool(opts.allow_pickle)
    name = given.method or recipe.method
    if not name:
        raise BadInputError(f"recipe {str(config)!r} has no method; pass one")
    unaligned = _first_given(given.unaligned or recipe.models.unaligned, given.base or recipe.models.base)
    return run_repair(name, {**recipe.parameters, **params}, tuned=_as_list(given.tuned) or recipe.models.tuned,
                      aligned=given.aligned or recipe.models.aligned, unaligned=unaligned,
                      calibration=given.calibration or recipe.calibration, out=out, options=options)


def audit(
    model: PathLike,
    *,
    suites: Sequence[str],
    out: PathLike | None = None,
    baseline: PathLike | None = None,
    aligned: PathLike | None = None,
    **settings: Any,
) -> AuditResults:
    """Audit `model` (against `baseline`) on `suites`; returns the results dict (results.json when `out` is set).

    `aligned`: the base model when `model` is a PEFT adapter. Other keywords are `AuditSettings` fields: judge,
    limit, seed, max_new_tokens, batch_size, force, progress.
    """
    from realignkit.checkpoints.lora_merge import model_and_base
    from realignkit.evaluation import AuditOptions, BackendOptions, GenerationSettings, audit_model

    chosen = _settings(AuditSettings, settings, "audit")
    model_dir, base_dir = model_and_base(os.fspath(model), _str(aligned), "model", "aligned")
    baseline_dir, baseline_base = model_and_base(_str(baseline), None, "baseline", "baseline_aligned")
    generation = GenerationSettings(max_new_tokens=chosen.max_new_tokens, batch_size=chosen.batch_size)
    options = AuditOptions(seed=chosen.seed, settings=generation, model=BackendOptions(aligned=base_dir),
                           baseline=BackendOptions(aligned=baseline_base), force=chosen.force,
                           progress=chosen.progress)
    return audit_model(model_dir, list(suites), baseline=baseline_dir, judge=chosen.judge, limit=chosen.limit,
                       out_dir=out, options=options)


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
