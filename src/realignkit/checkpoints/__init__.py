"""Floor 1: read and write checkpoints one tensor at a time (HF dirs, sharded safetensors, LoRA adapters).

Public API:
- `open_source(path, role=..., aligned=None, allow_pickle=False)`: a `ModelDirSource` or, for an adapter dir,
  a `LoraAdapterSource` over `aligned`. Both offer names(), shape(n), dtype(n), get(n), close().
- `StreamingModelWriter(out_dir, planned_tensors, max_shard_bytes)` + `copy_model_files(src, out)`.
- `canonical_name(name)`: VLM/PEFT name -> LLM-style name used to match tensors across models.
- `check_not_quantized(path, label)`: BadInputError for a quantised model/adapter dir (config + headers only);
  `open_source` refuses them too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from realignkit.checkpoints.lora import LoraAdapterSource, LoraFactors
from realignkit.checkpoints.names import (
    canonical_index,
    canonical_name,
    layer_index,
    module_matches,
    module_of,
)
from realignkit.checkpoints.quantized import check_not_quantized
from realignkit.checkpoints.reader import ModelDirSource
from realignkit.checkpoints.safetensors_io import PlannedTensor
from realignkit.checkpoints.writer import (
    DEFAULT_SHARD_BYTES,
    StreamingModelWriter,
    copy_model_files,
    parse_size,
)
from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import is_adapter_dir

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource


def open_source(
    path: str | os.PathLike[str], *, role: str, aligned: TensorSource = None, allow_pickle: bool = False
) -> ModelDirSource | LoraAdapterSource:
    """Open a model dir or (when it holds adapter_config.json) a LoRA adapter on top of `aligned`."""
    if not Path(path).exists():
        raise BadInputError(f"--{role} {str(path)!r} does not exist")
    if is_adapter_dir(path):
        if aligned is None:
            raise BadInputError(f"--{role} {str(path)!r} is a LoRA adapter: give its base model with --aligned")
        return LoraAdapterSource(path, aligned, role=role, allow_pickle=allow_pickle)
    return ModelDirSource(path, role=role, allow_pickle=allow_pickle)


__all__ = [
    "DEFAULT_SHARD_BYTES",
    "LoraAdapterSource",
    "LoraFactors",
    "ModelDirSource",
    "PlannedTensor",
    "StreamingModelWriter",
    "canonical_index",
    "canonical_name",
    "check_not_quantized",
    "copy_model_files",
    "is_adapter_dir",
    "layer_index",
    "module_matches",
    "module_of",
    "open_source",
    "parse_size",
]
