"""The mergekit recipe equivalent to a realignkit repair, for the methods the two tools share.

`mergekit_recipe(method, params, references, out_dtype)` gives a dict in mergekit's schema (or None when mergekit
has no equivalent: resta with DARE, realignkit's own `dare` whose rescale is 1/d, safe_lora, antidote, somf).
Models are pinned: hub parents as `org/name@commit`, local ones as absolute paths, adapters as `MODEL+LORA`.
`dtype: float32` (mergekit's compute dtype) because realignkit computes in fp32; `out_dtype` is the output's.
"""

from __future__ import annotations

from typing import Any

import yaml

# (sparsify, consensus) of realignkit's `gta` -> mergekit's method name
GTA_NAMES = {("none", "none"): "task_arithmetic", ("magnitude", "sum"): "ties", ("random", "none"): "dare_linear",
             ("random", "sum"): "dare_ties", ("magnitude_outliers", "none"): "breadcrumbs",
             ("magnitude_outliers", "sum"): "breadcrumbs_ties"}
RANDOM_NOTE = ("# DARE drops entries at random: mergekit draws its own mask, so its result matches this one in\n"
               "# distribution, not entry by entry (realignkit: seed {seed}, per tensor and model).\n")


def pinned_reference(described: dict[str, Any]) -> str:
    """A reference mergekit resolves to exactly the model that was used."""

    def side(found: dict[str, Any]) -> str:
        if found.get("repo_id"):
            return f"{found['repo_id']}@{found['commit']}" if found.get("commit") else found["repo_id"]
        return str(found["path"])

    text = side(described["model"])
    return f"{text}+{side(described['lora'])}" if described.get("lora") else text


def _tuned(references: dict[str, Any]) -> list[str]:
    keys = sorted((k for k in references if k.startswith("tuned[")), key=lambda k: int(k[6:-1]))
    return [pinned_reference(references[k]) for k in keys]


def _weighted(models: list[str], weights: list[float] | None, extra: dict[str, Any] | None = None) -> list[dict]:
    weights = weights or [1.0] * len(models)
    return [{"model": m, "parameters": {"weight": float(w), **(extra or {})}} for m, w in zip(models, weights, strict=True)]


def _per_model(values: list[float], count: int) -> list[float]:
    return values * count if len(values) == 1 else values


def _gta_recipe(name: str, params: Any, references: dict[str, Any]) -> dict[str, Any]:
    tuned = _tuned(references)
    densities = _per_model(list(params.density), len(tuned))
    gammas = _per_model(list(getattr(params, "gamma", [0.01])), len(tuned))
    models = []
    for index, (model, weight) in enumerate(zip(tuned, params.weights or [1.0] * len(tuned), strict=True)):
        values: dict[str, Any] = {"weight": float(weight), "density": float(densities[index])}
        if name.startswith("breadcrumbs"):
            values["gamma"] = float(gammas[index])
        models.append({"model": model, "parameters": values})
    return {"merge_method": name, "base_model": pinned_reference(references["aligned"]), "models": models,
            "parameters": {"normalize": params.normalize, "rescale": params.rescale, "lambda": float(params.scale)}}


def _recipe(method: str, params: Any, references: dict[str, Any]) -> dict[str, Any] | None:
    aligned = pinned_reference(references["aligned"])
    tuned = _tuned(references)
    if method == "interpolate":
        return {"merge_method": "linear", "models": _weighted([aligned, tuned[0]], [1 - params.alpha, params.alpha]),
                "parameters": {"normalize": True}}
    if method == "slerp":
        return {"merge_method": "slerp", "base_model": aligned, "models": [{"model": aligned}, {"model": tuned[0]}],
                "parameters": {"t": float(params.t)}}
    if method == "linear":
        return {"merge_method": "linear", "models": _weighted(tuned, params.weights),
                "parameters": {"normalize": params.normalize}}
    if method == "task_arithmetic":
        return {"merge_method": "task_arithmetic", "base_model": aligned, "models": _weighted(tuned, params.weights),
                "parameters": {"normalize": False, "lambda": float(params.scale)}}
    if method == "ties":
        models = _weighted(tuned, params.weights, {"density": float(params.density)})
        return {"merge_method": "ties", "base_model": aligned, "models": models,
                "parameters": {"normalize": True, "lambda": float(params.scale)}}
    if method == "resta" and params.dare_density is None:
        # θ_tuned + β·(θ_aligned − θ_unaligned) = θ_unaligned + 1·(θ_tuned − θ_unaligned) + β·(θ_aligned − θ_unaligned)
        models = _weighted([tuned[0], aligned], [1.0, params.beta])
        return {"merge_method": "task_arithmetic", "base_model": pinned_reference(references["unaligned"]),
                "models": models, "parameters": {"normalize": False, "lambda": 1.0}}
    if method in ("dare_linear", "dare_ties", "breadcrumbs"):
        return _gta_recipe(method, params, references)
    if method == "gta" and (params.sparsify, params.consensus) in GTA_NAMES:
        return _gta_recipe(GTA_NAMES[(params.sparsify, params.consensus)], params, references)
    return None


def mergekit_recipe(method: str, params: Any, references: dict[str, Any], out_dtype: str | None) -> str | None:
    """The YAML text of the equivalent mergekit recipe, or None."""
    recipe = _recipe(method, params, references)
    if recipe is None:
        return None
    recipe["dtype"] = "float32"
    if out_dtype:
        recipe["out_dtype"] = out_dtype
    header = f"# Written by realignkit: the mergekit recipe of this `{method}` repair.\n"
    if method in ("dare_linear", "dare_ties") or getattr(params, "sparsify", "") == "random":
        header += RANDOM_NOTE.format(seed=params.seed)
    return header + yaml.safe_dump(recipe, sort_keys=False)
