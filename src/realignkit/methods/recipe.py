"""mergekit-style YAML recipes for `realignkit repair --config recipe.yaml`.

    method: ties
    parameters: {density: 0.3, scale: 1.0}
    models:
      aligned: ./aligned
      tuned: [./tuned_a, ./tuned_b]     # or a single path
      unaligned: ./base                 # optional; `base` is accepted too
    calibration: ./harmful.jsonl        # optional
    out: ./repaired
    options: {dtype: bfloat16, shard_size: 2GB, allow_missing: false}

Paths follow `realignkit.common.paths.resolve_recipe_path` (the rule sweep recipes use too): `~` is expanded
first, absolute paths stay, relative ones are resolved against the recipe file's directory. Models may also be
references (checkpoints/references.py): `org/name[@revision]` stays a hub id when no such directory exists next to
the recipe, and each side of `MODEL+LORA` follows the same rule. Unknown keys are errors.

A mergekit recipe (it has `merge_method:`) is read by methods/mergekit_recipe.py instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from realignkit.checkpoints.references import recipe_model_text
from realignkit.common.config import read_yaml_mapping, resolve_recipe_path, validation_problems
from realignkit.common.errors import BadInputError, closest_match


class RecipeModels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aligned: str | None = None
    tuned: list[str] = []
    unaligned: str | None = None
    base: str | None = None

    @field_validator("tuned", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RecipeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: str | None = None
    shard_size: str | int | None = None
    allow_missing: bool | None = None
    allow_nonfinite: bool | None = None
    allow_pickle: bool | None = None
    threads: int | None = None


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str | None = None
    parameters: dict[str, Any] = {}
    models: RecipeModels = RecipeModels()
    calibration: str | None = None
    out: str | None = None
    options: RecipeOptions = RecipeOptions()


def _unknown_key_message(exc: ValidationError, path: Path) -> str:
    problem = validation_problems(exc)[0]
    if problem.unknown_key:
        owner: type[BaseModel] = Recipe
        for part in problem.where.split(".")[:-1]:
            owner = {"models": RecipeModels, "options": RecipeOptions}.get(part, owner)
        hint = closest_match(problem.key, owner.model_fields)
        return f"recipe {str(path)!r}: unknown key {problem.where!r}{hint}"
    return f"recipe {str(path)!r}: {problem.where or 'recipe'}: {problem.message}"


def _resolve(value: str | None, root: Path) -> str | None:
    return None if value is None else str(resolve_recipe_path(value, root))


def resolve_model_text(value: str | None, root: Path) -> str | None:
    return None if value is None else recipe_model_text(value, root)


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe; paths come back resolved against the recipe's directory."""
    path = Path(path)
    data = read_yaml_mapping(path, missing=f"--config {str(path)!r} is not a file",
                             not_mapping=f"recipe {str(path)!r} must be a mapping (method, parameters, models, out)")
    try:
        recipe = Recipe(**data)
    except ValidationError as exc:
        raise BadInputError(_unknown_key_message(exc, path)) from None
    root = path.parent
    models = recipe.models
    resolved_models = RecipeModels(
        aligned=resolve_model_text(models.aligned, root),
        tuned=[resolve_model_text(t, root) for t in models.tuned],
        unaligned=resolve_model_text(models.unaligned, root),
        base=resolve_model_text(models.base, root),
    )
    return recipe.model_copy(
        update={
            "models": resolved_models,
            "calibration": _resolve(recipe.calibration, root),
            "out": _resolve(recipe.out, root),
        }
    )
