"""Refuse quantised checkpoints before any work: every method here does arithmetic on floating-point weights.

Why: a GPTQ/AWQ/bitsandbytes/HQQ/compressed-tensors checkpoint stores packed integer codes plus per-group
scales and zero points. Read tensor by tensor it looks like an ordinary model, so a repair would copy the
integer codes and interpolate the scales on their own, and exit 0 with a corrupt model. The only sound input
is a dequantised (fp16/bf16/fp32) copy, so we refuse with one line that says what was found.

Detection is cheap (config.json + safetensors headers, never tensor data) and deliberately narrow so that
legit integer tensors (int64 `position_ids` buffers, bool masks) pass:
- config.json (or a nested sub-config such as a VLM's `text_config`) with `quantization_config` or
  `compression_config`;
- a tensor name ending in a known quantisation suffix (`qweight`, `qzeros`, `g_idx`, `absmax`, `SCB`,
  `quant_state.*`, `W_q`, `weight_packed`, `weight_scale`, ...);
- a `*.weight` tensor with an integer dtype (bitsandbytes stores its packed weights as uint8/int8 `weight`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.checkpoints.safetensors_io import CODE_FROM_DTYPE, DTYPE_FROM_CODE
from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import is_adapter_dir

if TYPE_CHECKING:
    import torch

CONFIG_KEYS = ("quantization_config", "compression_config")
_GPTQ_AWQ = "GPTQ/AWQ"
_BNB = "bitsandbytes"
_COMPRESSED = "compressed-tensors/FP8"
# Last name component -> (what it is, rank). Lower rank is reported first: the packed weights themselves say
# more to the user than a companion scale does.
_SUFFIXES: dict[str, tuple[str, int]] = {
    "qweight": (f"packed {_GPTQ_AWQ} weights", 0),
    "W_q": ("packed HQQ weights", 0),
    "weight_packed": (f"packed {_COMPRESSED} weights", 0),
    "qzeros": (f"{_GPTQ_AWQ} zero points", 2),
    "g_idx": ("GPTQ group index", 2),
    "absmax": (f"{_BNB} 4-bit scales", 2),
    "nested_absmax": (f"{_BNB} 4-bit scales", 2),
    "quant_map": (f"{_BNB} 4-bit code map", 2),
    "nested_quant_map": (f"{_BNB} 4-bit code map", 2),
    "SCB": (f"{_BNB} 8-bit scales", 2),
    "weight_format": (f"{_BNB} 8-bit layout", 2),
    "weight_scale": (f"{_COMPRESSED} scales", 2),
    "weight_scale_inv": (f"{_COMPRESSED} scales", 2),
    "weight_zero_point": (f"{_COMPRESSED} zero points", 2),
    "weight_global_scale": (f"{_COMPRESSED} scales", 2),
    "weight_shape": (f"{_COMPRESSED} packed shape", 2),
    "weight_g_idx": (f"{_COMPRESSED} group index", 2),
}
_SAFE_INDEX = "model.safetensors.index.json"


def _dtype_code(dtype: str | torch.dtype) -> str:
    """A safetensors dtype code ('I32', 'U8', ...) for a code or a torch dtype."""
    if isinstance(dtype, str):
        return dtype
    return CODE_FROM_DTYPE.get(dtype, str(dtype).removeprefix("torch."))


def _is_integer(code: str) -> bool:
    return code[:1] in ("I", "U") or code.startswith(("int", "uint"))


def _readable(code: str) -> str:
    """'int32' rather than 'I32': the name users know from torch."""
    dtype = DTYPE_FROM_CODE.get(code)
    return str(dtype).removeprefix("torch.") if dtype is not None else code


def tensor_marker(name: str, dtype: str | torch.dtype) -> tuple[str, int] | None:
    """(description, rank) when this tensor is part of a quantised layer, else None."""
    code = _dtype_code(dtype)
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _SUFFIXES:
        what, rank = _SUFFIXES[leaf]
        return f"tensor {name!r} is {_readable(code)} ({what})", rank
    if ".quant_state." in name or leaf.startswith("quant_state"):
        return f"tensor {name!r} is {_readable(code)} ({_BNB} 4-bit quantisation state)", 2
    if leaf == "weight" and _is_integer(code):
        # No floating-point layer stores an integer weight; bitsandbytes packs its 4/8-bit weights this way.
        return f"tensor {name!r} is {_readable(code)} (packed/quantised integer weights, e.g. {_BNB})", 1
    return None


def first_tensor_marker(tensors: Iterable[tuple[str, str | torch.dtype]]) -> str | None:
    """The most telling marker among (name, dtype) pairs, or None when none is quantised."""
    best: tuple[int, str] | None = None
    for name, dtype in tensors:
        found = tensor_marker(name, dtype)
        if found is not None and (best is None or found[1] < best[0]):
            best = (found[1], found[0])
            if best[0] == 0:
                break
    return best[1] if best else None


def config_marker(config: object, *, depth: int = 3) -> str | None:
    """'quantization_config (quant_method=gptq)' when a config dict, or a sub-config in it, declares quantisation."""
    if not isinstance(config, dict) or depth < 0:
        return None
    for key in CONFIG_KEYS:
        value = config.get(key)
        if value:  # `null` / {} are what some tools write for "not quantised"
            method = (value.get("quant_method") or value.get("format")) if isinstance(value, dict) else None
            return f"{key} (quant_method={method})" if method else key
    for value in config.values():
        found = config_marker(value, depth=depth - 1)
        if found is not None:
            return found
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable files are reported by the code that really needs them


def header_dtypes(path: Path) -> list[tuple[str, str]]:
    """(name, dtype code) for each tensor in a safetensors header; [] if it is unreadable.

    Lenient on purpose: quantised files may use dtypes the real reader refuses, and a truncated file is
    reported, with a better message, by that reader.
    """
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return []
            (length,) = struct.unpack("<Q", prefix)
            if length > min(100 * 1024 * 1024, path.stat().st_size - 8):
                return []
            header = json.loads(handle.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    if not isinstance(header, dict):
        return []
    return [(name, str(entry.get("dtype"))) for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict)]


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files a model dir loads from: its index's shards, model.safetensors, else every *.safetensors."""
    index = _read_json(directory / _SAFE_INDEX) if (directory / _SAFE_INDEX).is_file() else None
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        return [directory / f for f in sorted(set(map(str, index["weight_map"].values()))) if (directory / f).is_file()]
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    return sorted(directory.glob("*.safetensors"))


def refuse(label: str, marker: str) -> BadInputError:
    return BadInputError(
        f"{label} is quantised: {marker}; realignkit needs floating-point weights, so dequantise it first "
        "(e.g. load it with transformers, call model.dequantize(), save_pretrained) and pass the dequantised copy"
    )


def check_config(directory: str | os.PathLike[str], label: str) -> None:
    """Refuse a dir whose config.json declares quantisation."""
    config_file = Path(directory) / "config.json"
    if config_file.is_file():
        marker = config_marker(_read_json(config_file))
        if marker is not None:
            raise refuse(label, f"config.json has {marker}")


def check_tensors(tensors: Iterable[tuple[str, str | torch.dtype]], label: str, where: str | None = None) -> None:
    """Refuse when any (name, dtype) pair is a quantisation tensor; `where` names the file."""
    marker = first_tensor_marker(tensors)
    if marker is not None:
        raise refuse(label, f"{where}: {marker}" if where else marker)


def check_not_quantized(path: str | os.PathLike[str], label: str, *, files: list[Path] | None = None) -> None:
    """Cheap check of a model or PEFT adapter dir: config.json and safetensors headers only.

    Adapter dirs are checked by their own tensors only: a QLoRA adapter's config names its quantised training
    base, yet its LoRA factors are floating point and are applied to whatever base is given (checked itself).
    """
    directory = Path(path)
    if not directory.is_dir():
        return  # the caller reports a missing dir its own way
    adapter = is_adapter_dir(directory)
    if not adapter:
        check_config(directory, label)
    if files is None:
        files = sorted(directory.glob("adapter_model*.safetensors")) if adapter else weight_files(directory)
    for file in files:
        check_tensors(header_dtypes(file), label, file.name)
