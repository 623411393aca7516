"""mergekit YAML recipes, read as mergekit 0.1.5 reads them, for the merge methods realignkit shares with it.

    merge_method: ties                  # linear, slerp, task_arithmetic, ties, dare_linear, dare_ties,
    base_model: org/base@main           #   breadcrumbs, breadcrumbs_ties
    models:
      - model: org/tuned-a
        parameters: {weight: 0.6, density: [0.2, 0.8]}        # a gradient over the layers
      - model: ./tuned-b+./lora-b                             # MODEL+LORA
        parameters:
          weight: [{filter: self_attn, value: 0.2}, {value: 0.4}]   # first matching filter wins
    parameters: {normalize: true, lambda: 1.0, int8_mask: true}
    dtype: float32                      # compute dtype (inputs are cast to it); out_dtype: the written dtype

Semantics (mergekit's `evaluate_setting` and `ConfigReader`, re-implemented):
- a parameter is looked up in the model's own `parameters`, then the top-level `parameters`, then its default;
  method-wide parameters (`t`, `normalize`, `lambda`, ...) only at the top level, as mergekit does;
- a list of numbers is a gradient: at layer position x = layer / (num_layers − 1) (x = 1 with one layer; 0 for
  tensors outside the layer stack: embeddings, final norm, lm_head) it is interpolated linearly between its
  evenly spaced values; a list of booleans/strings picks value[int(x·(n−1))];
- a list of `{filter, value}` takes the first entry whose filter is absent, `*`, or a substring of the tensor
  name; when none matches, the next scope is asked.

Anything realignkit does not run (`slices`, `modules`, `tokenizer_source: union`, `tokenizer`, `chat_template`,
other merge methods) is refused with one line naming the key; unknown keys too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from realignkit.common.errors import BadInputError, closest_match

REQUIRED = object()
_FLOAT, _BOOL = TypeAdapter(float), TypeAdapter(bool)
NUMERIC = {"weight", "density", "gamma", "lambda", "t", "epsilon"}
_GTA_SHARED = {"int8_mask": False, "lambda": 1.0}


@dataclass(frozen=True)
class MethodMap:
    """How one mergekit method runs here: realignkit method, its fixed parameters, mergekit's parameters."""

    method: str
    fixed: dict[str, Any]
    shared: dict[str, Any]  # name -> default (REQUIRED: must be given)
    per_model: dict[str, Any]
    base: str  # "required" | "input" (linear: the base is just one more input)
    paper_method: str
    inputs: int | None = None  # exact number of inputs, base included (slerp: 2)


def _gta(method: str, fixed: dict[str, Any], normalize: bool, rescale: bool, paper: str, gamma: bool = False):
    per_model = {"weight": REQUIRED, "density": 1.0, **({"gamma": 0.01} if gamma else {})}
    shared = {**_GTA_SHARED, "normalize": normalize, "rescale": rescale}
    return MethodMap(method, fixed, shared, per_model, "required", paper)


METHODS: dict[str, MethodMap] = {
    "linear": MethodMap("linear", {}, {"normalize": True}, {"weight": REQUIRED}, "input", "linear"),
    "slerp": MethodMap("slerp", {}, {"t": REQUIRED}, {}, "required", "slerp", inputs=2),
    "task_arithmetic": _gta("gta", {"sparsify": "none", "consensus": "none"}, False, False, "task_arithmetic"),
    "ties": _gta("gta", {"sparsify": "magnitude", "consensus": "sum"}, True, False, "ties"),
    "dare_linear": _gta("dare_linear", {}, False, True, "dare_linear"),
    "dare_ties": _gta("dare_ties", {}, False, True, "dare_ties"),
    "breadcrumbs": _gta("breadcrumbs", {}, False, False, "breadcrumbs", gamma=True),
    "breadcrumbs_ties": _gta("gta", {"sparsify": "magnitude_outliers", "consensus": "sum"}, False, False,
                             "breadcrumbs", gamma=True),
}
OTHER_MERGEKIT_METHODS = ("passthrough", "model_stock", "nuslerp", "multislerp", "karcher", "della", "della_linear",
                          "sce", "arcee_fusion", "nearswap", "ram")
# Parameters some mergekit method takes: ignored with a warning where this method does not (as mergekit does).
OTHER_MERGEKIT_PARAMETERS = {"weight", "density", "gamma", "epsilon", "lambda", "normalize", "rescale", "int8_mask",
                             "t", "filter_wise", "select_topk", "nuslerp_flatten", "nuslerp_row_wise", "max_iter",
                             "tol", "eps", "embed_slerp", "tukey_fence"}
TOP_LEVEL = {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source"}
UNSUPPORTED_TOP_LEVEL = {"slices": "slices (layer ranges / frankenmerges)", "modules": "modules",
                         "tokenizer": "tokenizer (vocabulary surgery)", "chat_template": "chat_template"}
DTYPES = {"float32", "float16", "bfloat16"}


@dataclass
class MergekitInput:
    reference: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class MergekitConfig:
    merge_method: str
    mapping: MethodMap
    base_model: str | None
    models: list[MergekitInput]
    parameters: dict[str, Any]
    dtype: str | None
    out_dtype: str | None
    raw: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def is_mergekit_recipe(data: Any) -> bool:
    return isinstance(data, dict) and "merge_method" in data


def _fail(where: str, message: str) -> BadInputError:
    return BadInputError(f"mergekit recipe {where}: {message}")


def _dtype(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise _fail(where, f"{key}: {value!r} is not one of {', '.join(sorted(DTYPES))}")
    return name


def _check_setting(setting: Any, where: str, key: str) -> None:
    """A scalar, a list of scalars (gradient), a {filter, value} or a list of them."""
    if isinstance(setting, bool | int | float | str):
        return
    if isinstance(setting, dict):
        unknown = set(setting) - {"filter", "value"}
        if unknown or "value" not in setting:
            raise _fail(where, f"parameter {key!r}: a conditional value has keys filter and value, got {sorted(setting)}")
        if setting.get("filter") is not None and not isinstance(setting["filter"], str):
            raise _fail(where, f"parameter {key!r}: filter must be a string")
        _check_setting(setting["value"], where, key)
        return
    if isinstance(setting, list) and setting and all(isinstance(e, bool | int | float | str) for e in setting):
        return
    if isinstance(setting, list) and setting and all(isinstance(e, dict) for e in setting):
        for entry in setting:
            _check_setting(entry, where, key)
        return
    raise _fail(where, f"parameter {key!r}: expected a number, a list of numbers or filter/value entries, got {setting!r}")


def _parameters(values: Any, where: str, allowed: set[str], scope: str, warnings: list[str]) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise _fail(where, f"{scope} parameters must be a mapping")
    kept = {}
    for key, setting in values.items():
        if key not in allowed:
            if key in OTHER_MERGEKIT_PARAMETERS:
                warnings.append(f"{scope} parameter {key!r} is not used by this merge method (mergekit ignores it too)")
                continue
            raise _fail(where, f"unknown parameter {key!r}{closest_match(key, allowed)}")
        _check_setting(setting, where, key)
        kept[key] = setting
    return kept


def _check_top_level(data: dict[str, Any], where: str) -> None:
    for key in data:
        if key in UNSUPPORTED_TOP_LEVEL:
            raise _fail(where, f"{key!r} is not supported by realignkit ({UNSUPPORTED_TOP_LEVEL[key]}); "
                               "use mergekit itself for this recipe")
        if key not in TOP_LEVEL:
            raise _fail(where, f"unknown key {key!r}{closest_match(key, TOP_LEVEL)}")
    source = data.get("tokenizer_source")
    if source is not None and source != "base":
        raise _fail(where, f"'tokenizer_source: {source}' is not supported (only 'base', the default); use mergekit")


def _method(data: dict[str, Any], where: str) -> MethodMap:
    name = data.get("merge_method")
    if name in OTHER_MERGEKIT_METHODS:
        raise _fail(where, f"'merge_method: {name}' is not supported by realignkit (supported: {', '.join(METHODS)})")
    if name not in METHODS:
        raise _fail(where, f"unknown merge_method {name!r}{closest_match(str(name), METHODS)}; "
                           f"supported: {', '.join(METHODS)}")
    return METHODS[name]


def _models(data: dict[str, Any], mapping: MethodMap, where: str, warnings: list[str]) -> list[MergekitInput]:
    entries = data.get("models")
    if not isinstance(entries, list) or not entries:
        raise _fail(where, "'models' must be a non-empty list of {model, parameters}")
    models = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise _fail(where, f"models[{index}] must be a mapping with a 'model' reference")
        unknown = set(entry) - {"model", "parameters"}
        if unknown:
            raise _fail(where, f"models[{index}]: unknown key {sorted(unknown)[0]!r}")
        allowed = set(mapping.per_model)
        params = _parameters(entry.get("parameters"), where, allowed, f"models[{index}]", warnings)
        models.append(MergekitInput(entry["model"].strip(), params))
    names = [m.reference for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(where, f"model {duplicates[0]!r} is listed twice")
    return models


def parse_mergekit_config(data: dict[str, Any], where: str) -> MergekitConfig:
    """Validate a mergekit recipe (already parsed YAML); BadInputError naming the first problem."""
    _check_top_level(data, where)
    mapping = _method(data, where)
    warnings: list[str] = []
    models = _models(data, mapping, where, warnings)
    allowed = set(mapping.shared) | set(mapping.per_model)
    parameters = _parameters(data.get("parameters"), where, allowed, "top-level", warnings)
    base = data.get("base_model")
    if base is not None and not isinstance(base, str):
        raise _fail(where, "base_model must be a model reference (a string)")
    if mapping.base == "required" and not base:
        raise _fail(where, f"merge_method {data['merge_method']} needs a base_model")
    config = MergekitConfig(data["merge_method"], mapping, base.strip() if base else None, models, parameters,
                            _dtype(data.get("dtype"), "dtype", where), _dtype(data.get("out_dtype"), "out_dtype", where),
                            data, warnings)
    if mapping.inputs is not None and len(input_references(config)) != mapping.inputs:
        raise _fail(where, f"{config.merge_method} merges exactly {mapping.inputs} models, base_model included "
                           f"(got {len(input_references(config))})")
    return config


def input_references(config: MergekitConfig) -> list[str]:
    """Every input in mergekit's order: the listed models, then base_model when it is not among them."""
    names = [m.reference for m in config.models]
    return names + [config.base_model] if config.base_model and config.base_model not in names else names


def evaluate_setting(setting: Any, tensor_name: str, position: float, validate: Any) -> Any:
    """mergekit's evaluate_setting: filters, gradients, scalars; None when no filter matches."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, bool | int | float | str):
        return validate(setting)
    if all(isinstance(e, bool | int | float | str) for e in setting):
        values = [validate(e) for e in setting]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return values[int(position * (len(values) - 1))]
        scaled = position * (len(values) - 1)
        low = int(scaled)
        high = min(len(values) - 1, low + 1)
        fraction = scaled - low
        return validate((1 - fraction) * values[low] + fraction * values[high])
    for condition in setting:
        pattern = condition.get("filter")
        if pattern is None or pattern == "*" or (tensor_name and pattern in tensor_name):
            return evaluate_setting(condition["value"], tensor_name, position, validate)
    return None


def validator(name: str) -> Any:
    adapter = _FLOAT if name in NUMERIC else _BOOL

    def validate(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError:
            kind = "a number" if name in NUMERIC else "true or false"
            raise BadInputError(f"mergekit parameter {name!r}: {value!r} is not {kind}") from None

    return validate


def resolve(name: str, scopes: list[dict[str, Any]], tensor_name: str, position: float, default: Any,
            owner: str) -> Any:
    """The first scope that gives a value for this tensor, else the default (REQUIRED: an error)."""
    validate = validator(name)
    for scope in scopes:
        if name in scope:
            value = evaluate_setting(scope[name], tensor_name, position, validate)
            if value is not None:
                return value
    if default is REQUIRED:
        raise BadInputError(f"mergekit recipe: no {name!r} for {owner} at tensor {tensor_name!r} (set it in the "
                            "model's parameters or the top-level parameters)")
    return default
