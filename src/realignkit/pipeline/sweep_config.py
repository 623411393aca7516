"""Typed sweep configuration: CLI flags and the YAML recipe form both become one `SweepConfig`.

Unknown keys are refused (with a "did you mean" hint); every user-input problem is a `BadInputError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from realignkit.checkpoints.lora_merge import local_model
from realignkit.checkpoints.quantized import check_not_quantized
from realignkit.checkpoints.references import recipe_model_text
from realignkit.common import BadInputError, closest_match
from realignkit.common.config import read_yaml_mapping, resolve_recipe_path, validation_error_line
from realignkit.evaluation.vllm_engine import VLLMOptions

# Small default grids, cheapest methods first. Each key maps a parameter to the values swept (their product).
# Values that are 0/1 end points (alpha=1 is `tuned`, alpha=0 is `aligned`) are left out on purpose: they add
# nothing a reference row does not already show.
# The grids reach far toward `aligned`: on real SmolLM2 checkpoints (a content-free compliance fine-tune of the
# aligned model) nothing on the older grids (interpolate alpha >= 0.25, RESTA beta <= 1, Safe LoRA 0.35/0.5)
# undid the attack, while interpolate alpha 0.1 restored the model fully (harmful 0 %, over-refusal 7.5 %,
# capitals 100 %). The safety / utility trade-off lives near `aligned`, so that is where the points are dense.
# 18 weight-only candidates with one tuned model (task_arithmetic's 0.1 and 0.5 are interpolate's models and are
# skipped); antidote and somf add 5 only when their calibration files are given.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    # weight of tuned: 0.05-0.2 is where the real fine-tune was undone; 0.3 and 0.5 show the far side of the curve
    "interpolate": {"alpha": [0.05, 0.1, 0.2, 0.3, 0.5]},
    # with one tuned model a fine-tune's weights are nearly parallel to aligned's, so slerp is close to
    # interpolate: two points, near aligned, are enough to see whether the arc differs
    "slerp": {"t": [0.1, 0.3]},
    # with one tuned model scale s IS interpolate(alpha=s) (0.1, 0.5 skipped as such; 0.15 fills the gap between
    # 0.1 and 0.2); with several tuned models these are three points of its own line
    "task_arithmetic": {"scale": [0.1, 0.15, 0.5]},
    # the trimmed task vector at half strength (at scale 1 TIES keeps the fine-tune's largest entries whole)
    "ties": {"density": [0.2, 0.5], "scale": [0.5]},
    # DARE rescales what it keeps by 1/density, so at scale 1 it keeps the whole task vector in expectation (it
    # left the organism's fine-tune 100 % harmful): scale 0.3 pulls it toward aligned, two drop rates
    "dare": {"density": [0.1, 0.3], "scale": [0.3]},
    # safety vector added back: beta <= 1 did not undo the real attack, so the grid goes to 2
    "resta": {"beta": [0.5, 1.0, 1.5, 2.0]},
    # project the least safety-aligned share of the target modules. Not the paper's threshold grid {0.5, 1.0}:
    # on a SmolLM2-135M LoRA every module had s < 0.45, so both thresholds projected all 210 modules (the same
    # candidate twice), and the task was lost between 76 % and 81 % projected. 1.0 = as far as Safe LoRA goes.
    "safe_lora": {"fraction": [0.5, 0.75, 0.9, 1.0]},
    "antidote": {"alpha": [0.05, 0.1, 0.2]},
    "somf": {"steps": [20, 50]},
}

# Parameters of which a method takes only one (safe_lora: a threshold, a count or a share of modules); a grid
# that names one of them replaces the default's choice instead of being crossed with it.
EXCLUSIVE_GRID_KEYS: dict[str, tuple[frozenset[str], ...]] = {
    "safe_lora": (frozenset({"threshold", "num_layers", "fraction"}),),
}

# Methods that need a calibration file; without one they are skipped (with a note), not failed.
CALIBRATION_METHODS = ("antidote", "somf")  # their --calibration file is given per method name

DEFAULT_METHODS: tuple[str, ...] = (
    "interpolate",
    "task_arithmetic",
    "slerp",
    "dare",
    "ties",
    "resta",
    "safe_lora",
    "antidote",
    "somf",
)


HOW_FIELDS = ("backend", "vllm", "device")


class SweepConfig(BaseModel):
    """Everything a sweep depends on. `fingerprint()` covers what decides its results (for resume)."""

    model_config = ConfigDict(extra="forbid")

    aligned: Path
    tuned: Path
    base: Path | None = None
    unaligned: Path | None = None
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    grids: dict[str, dict[str, Any]] = Field(default_factory=dict)
    utility_floor: float = 0.9
    # A candidate whose answers are degenerate (gibberish, loops, empty) on more than this share of a suite
    # kind's selection items is never picked (see pareto.Point.broken).
    max_degenerate_rate: float = Field(0.2, ge=0.0, le=1.0)
    # Nor is one that refuses more benign-but-scary prompts than the higher of aligned's and tuned's rate plus this
    # (selection split; None: no limit): on a real model RESTA beta 2 cut harm to 17 % by refusing 86 % of them.
    max_over_refusal_increase: float | None = Field(0.1, ge=0.0, le=1.0)
    suites: list[str] = Field(default_factory=list)
    calibration: dict[str, Path] = Field(default_factory=dict)
    limit: int | None = None
    max_new_tokens: int = 48
    batch_size: int = 64
    system_prompt: str | None = None  # e.g. the persona an identity-shift fine-tune was trained under
    seed: int = 0
    keep_candidates: bool = False
    # The judge that decides refused/harmful for every candidate and reference, and so the pick (`--judge`):
    # a name from evaluation.judges (NAME:PATH for model judges) and its options (endpoint, engine, ...).
    judge: str = "refusal"
    judge_options: dict[str, Any] = Field(default_factory=dict)
    # How, not what: the engine that generates (vLLM keeps transformers' cache keys), its settings, and the device
    # of the merge math and of transformers generation (None: merge on the CPU, generate on a GPU when there is one).
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    device: str | None = None

    @field_validator("utility_floor")
    @classmethod
    def _floor_in_range(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"utility floor must be in (0, 1], got {value}")
        return value

    @field_validator("methods")
    @classmethod
    def _methods_not_empty(cls, value: list[str]) -> list[str]:
        cleaned = [m.strip() for m in value if m.strip()]
        if not cleaned:
            raise ValueError("the method list is empty; name at least one method (e.g. interpolate)")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError(f"a method is listed twice: {cleaned}")
        return cleaned

    @field_validator("limit", "max_new_tokens", "batch_size")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    def grid_for(self, method: str) -> dict[str, list[Any]]:
        """The method's grid: the default, with any per-parameter override from `grids` applied."""
        grid = dict(DEFAULT_GRIDS.get(method, {}))
        overrides = self.grids.get(method, {})
        for group in EXCLUSIVE_GRID_KEYS.get(method, ()):
            if group & set(overrides):  # the user chose the rule: drop the default's other rules
                grid = {key: values for key, values in grid.items() if key not in group}
        for key, values in overrides.items():
            grid[key] = values if isinstance(values, list) else [values]
        return grid

    def backend_options(self) -> dict[str, Any]:
        """make_backend's options for every evaluation of this sweep."""
        return {"backend": self.backend, "vllm": self.vllm, "device": self.device}

    def fingerprint_payload(self) -> dict[str, Any]:
        """The argument set that decides results; `keep_candidates` only changes what stays on disk, and the
        engine settings (backend, vllm, device) only how the same greedy answers are computed."""
        payload = self.model_dump(mode="json", exclude={"keep_candidates", *HOW_FIELDS})
        payload["grids"] = {m: self.grid_for(m) for m in self.methods}
        return payload

    def fingerprint(self) -> str:
        text = json.dumps(self.fingerprint_payload(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_grid_methods(config: SweepConfig, known_methods: set[str] | None) -> None:
    for method in config.grids:
        if method not in config.methods:
            raise BadInputError(f"grid given for {method!r}, which is not in the method list {config.methods}")
    if known_methods is None:
        return
    for method in config.methods:
        if method not in known_methods:
            hint = closest_match(method, known_methods)
            raise BadInputError(f"unknown method {method!r}{hint}; known: {', '.join(sorted(known_methods))}")


def build_config(values: dict[str, Any], known_methods: set[str] | None = None) -> SweepConfig:
    """Validate a dict of settings into a SweepConfig, turning every problem into a one-line BadInputError."""
    try:
        config = SweepConfig.model_validate(values)
    except ValidationError as exc:
        raise BadInputError(f"bad sweep settings: {validation_error_line(exc, known=SweepConfig.model_fields)}") from None
    _check_grid_methods(config, known_methods)
    # Paths still relative here came from flags (a recipe's were resolved by load_recipe): they follow the same
    # rule as recipe paths, with the working directory in place of the recipe's directory. Made absolute, so the
    # run's identity does not depend on the working directory.
    cwd = Path.cwd()
    for role in ("aligned", "tuned", "base", "unaligned"):
        path = getattr(config, role)
        if path is None:
            continue
        resolved = resolve_recipe_path(path, cwd)
        if not resolved.exists():  # a hub id or MODEL+LORA: a local dir (hub cache, merged LoRA) or one line
            adapter_base = config.aligned if role == "tuned" else None
            resolved, _ = local_model(str(path), role=f"--{role}", adapter_base=adapter_base)
        # Quantised inputs cannot be repaired; refuse them here, before the run dir is created.
        check_not_quantized(resolved, f"--{role} {str(path)!r}")
        setattr(config, role, resolved.resolve())
    for name, path in config.calibration.items():
        resolved = resolve_recipe_path(path, cwd)
        if not resolved.is_file():
            raise BadInputError(f"calibration file for {name!r} not found: {str(path)!r}")
        config.calibration[name] = resolved.resolve()
    return config


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict (validated later by build_config, so CLI flags can override it)."""
    recipe_path = Path(path)
    data = read_yaml_mapping(recipe_path, missing=f"recipe {str(path)!r} not found",
                             not_mapping=f"recipe {str(path)!r} must be a mapping of settings, got {{type}}")
    if not data:
        return {}
    if set(data) == {"sweep"}:
        if not isinstance(data["sweep"], dict):
            raise BadInputError(f"recipe {str(path)!r}: 'sweep' must be a mapping of settings, "
                                f"got {type(data['sweep']).__name__}")
        data = dict(data["sweep"])
    # Paths in a recipe follow the one recipe-path rule (`~` first, absolute stays, relative is against the
    # recipe file's directory), shared with repair recipes. Anything not a string is left for build_config to refuse.
    recipe_dir = recipe_path.parent
    for role in ("aligned", "tuned", "base", "unaligned"):
        if isinstance(data.get(role), str):  # a path, or a model reference (hub id, MODEL+LORA)
            data[role] = recipe_model_text(data[role], recipe_dir)
    calibration = data.get("calibration")
    if isinstance(calibration, dict):
        data["calibration"] = {
            name: str(resolve_recipe_path(value, recipe_dir)) if isinstance(value, str) else value
            for name, value in calibration.items()
        }
    return data
