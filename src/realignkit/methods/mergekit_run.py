"""Run a mergekit recipe (methods/mergekit_recipe.py) with the repair engine.

Roles: the mergekit base_model is `aligned`; the other models are the `tuned` list (linear: every input is a tuned
and aligned only anchors names; slerp: the one model that is not the base). Config and tokenizer come from the
base model, else the first model (mergekit's "donor"). Each tensor gets its own parameters from a schedule that
evaluates the recipe's gradients and filters at that tensor (layer position from config.json's layer count).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from realignkit.checkpoints import layer_index
from realignkit.checkpoints.references import ResolvedModel, resolve_reference
from realignkit.common import config as common_config
from realignkit.common.errors import BadInputError
from realignkit.methods.mergekit_export import pinned_reference
from realignkit.methods.mergekit_recipe import (
    MergekitConfig,
    MergekitInput,
    input_references,
    parse_mergekit_config,
    resolve,
)

if TYPE_CHECKING:
    from realignkit.methods.engine import RepairOptions, RepairResult

OUR_NAMES = {"weight": "weights", "lambda": "scale"}  # mergekit parameter -> realignkit parameter


@dataclass
class MergekitSchedule:
    """Per-tensor parameters of the realignkit method that runs this recipe (see methods/schedule.py)."""

    config: MergekitConfig
    inputs: list[MergekitInput]  # one per --tuned, in order
    num_layers: int
    pinned: dict[str, str] = field(default_factory=dict)  # reference as written -> pinned reference
    source: str = ""

    def position(self, name: str) -> float:
        """mergekit's gradient position: layer / (num_layers − 1); 0 outside the layer stack."""
        layer = layer_index(name)
        if layer is None:
            return 0.0
        return layer / (self.num_layers - 1) if self.num_layers > 1 else 1.0

    def values_for(self, name: str) -> dict[str, Any]:
        mapping, top = self.config.mapping, self.config.parameters
        position = self.position(name)
        values: dict[str, Any] = dict(mapping.fixed)
        for key, default in mapping.shared.items():
            values[OUR_NAMES.get(key, key)] = resolve(key, [top], name, position, default, "the recipe")
        for key, default in mapping.per_model.items():
            values[OUR_NAMES.get(key, key)] = [
                resolve(key, [item.parameters, top], name, position, default, f"model {item.reference!r}")
                for item in self.inputs
            ]
        return values

    def describe(self) -> dict[str, Any]:
        return {"mergekit_recipe": self.source, "merge_method": self.config.merge_method,
                "num_layers": self.num_layers, "parameters": self.config.parameters,
                "models": [{"model": m.reference, "parameters": m.parameters} for m in self.config.models]}

    def display_name(self) -> str:
        return f"{self.config.merge_method} (mergekit recipe)"

    def paper_method(self) -> str:
        return self.config.mapping.paper_method

    def mergekit_yaml(self) -> str:
        """The recipe as given, with every model pinned (hub commit, absolute path) so it reruns anywhere."""
        raw = json.loads(json.dumps(self.config.raw, default=str))
        if raw.get("base_model"):
            raw["base_model"] = self.pinned.get(raw["base_model"].strip(), raw["base_model"])
        for entry in raw.get("models", []):
            entry["model"] = self.pinned.get(entry["model"].strip(), entry["model"])
        header = f"# The mergekit recipe this model was built from ({self.source}), with its models pinned.\n"
        return header + yaml.safe_dump(raw, sort_keys=False)


@dataclass
class MergekitRun:
    method: str
    aligned: ResolvedModel
    tuned: list[ResolvedModel]
    schedule: MergekitSchedule
    donor: Path
    compute_dtype: str | None
    out_dtype: str | None
    warnings: list[str]


def _num_layers(config_file: Path) -> int | None:
    if not config_file.is_file():
        return None
    data = json.loads(config_file.read_text())
    for owner in (data, data.get("text_config") or {}, data.get("llm_config") or {}):
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(owner.get(key), int):
                return owner[key]
    return None


def _layers_from_weights(model_dir: Path) -> int:
    from realignkit.checkpoints import open_source

    source = open_source(model_dir, role="base_model", allow_pickle=False)
    try:
        layers = [index for name in source.names() if (index := layer_index(name)) is not None]
    finally:
        source.close()
    return max(layers) + 1 if layers else 1


def _donor_dir(resolved: ResolvedModel) -> Path:
    from realignkit.checkpoints.lora_merge import merged_model_dir

    if resolved.lora is None:
        return resolved.model.path
    return merged_model_dir(resolved.model.path, resolved.lora.path)


def plan_mergekit_run(data: dict[str, Any], recipe_path: Path) -> MergekitRun:
    """Validate the recipe and resolve its models; BadInputError (one line) on anything unsupported."""
    where = repr(str(recipe_path))
    config = parse_mergekit_config(data, where)
    references = input_references(config)
    search = [recipe_path.parent.absolute()]
    resolved = {text: resolve_reference(text, role=f"mergekit model {text!r}", search_dirs=search)
                for text in references}
    by_text = {m.reference: m for m in config.models}
    if config.mapping.base == "input":  # linear: every input is averaged; aligned only anchors the layout
        tuned_texts = references
        aligned_text = config.base_model or references[0]
    else:
        assert config.base_model is not None
        aligned_text = config.base_model
        tuned_texts = [t for t in references if t != config.base_model]
        if not tuned_texts:
            raise BadInputError(f"mergekit recipe {where}: no model to merge besides the base_model")
    inputs = [by_text.get(text, MergekitInput(text)) for text in tuned_texts]
    donor = _donor_dir(resolved[aligned_text])
    num_layers = _num_layers(donor / "config.json") or _layers_from_weights(donor)
    pinned = {text: pinned_reference(found.describe()) for text, found in resolved.items()}
    schedule = MergekitSchedule(config, inputs, num_layers, pinned, source=str(recipe_path))
    return MergekitRun(config.mapping.method, resolved[aligned_text], [resolved[t] for t in tuned_texts], schedule,
                       donor, config.dtype, config.out_dtype or config.dtype, config.warnings)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    return common_config.read_yaml(path, missing=f"--config {str(path)!r} is not a file") or {}


def run_mergekit_recipe(path: str | os.PathLike[str], out: str | os.PathLike[str],
                        options: RepairOptions | None = None) -> tuple[RepairResult, MergekitRun]:
    """Run a mergekit recipe into `out`: (RepairResult, the plan). `options` (RepairOptions) may set the output
    dtype (else the recipe's out_dtype, else its dtype, else the inputs'); the compute dtype is the recipe's."""
    from realignkit.methods.engine import run_repair

    run = plan_mergekit_run(read_yaml(path), Path(path))
    opts = options or RepairOptions()
    opts.compute_dtype = run.compute_dtype
    opts.dtype = opts.dtype or run.out_dtype
    opts.files_from = run.donor
    result = run_repair(run.method, run.schedule, tuned=run.tuned, aligned=run.aligned, out=out, options=opts)
    return result, run
