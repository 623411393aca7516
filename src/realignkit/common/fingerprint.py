"""The one fingerprint of a model's weights: what every cache keyed by "which model" uses.

`weights_fingerprint(model_dir, base=None)` identifies what a local Hugging Face model dir (or PEFT adapter dir)
computes, from file *contents* only, so the same weights in two directories (a sweep candidate, the sweep's
`winner/`, a copy of it) get the same key, while provenance files (realignkit.json, README, trajectories) and
the directory's own path do not count. It covers:

- the tensors of every `*.safetensors` file: each tensor's name, dtype, shape and raw bytes, read straight from
  the file (no torch); independent of shard layout, tensor order in the file and `__metadata__`;
- raw bytes of pickle weights (`pytorch_model*.bin`, `adapter_model.bin`, `model*.pt`...), which
  `--allow-pickle` loads instead;
- `config.json`, `generation_config.json`, `adapter_config.json` and `tokenizer_config.json` as canonical JSON
  without the keys that hold paths or library versions (e.g. `base_model_name_or_path`,
  `transformers_version`): `lora_alpha`, rope settings or stop tokens change the answers as surely as weights;
- the tokenizer files' bytes (tokenizer.json, tokenizer.model, vocab/merges, chat_template.jinja);
- for an adapter dir, the fingerprint of its base model (`base`, else `base_model_name_or_path`).

Each file's digest is kept in-process by (path, size, mtime, ctime, inode), so a dir is hashed once per process
(about the speed of reading the file: ~0.6 s for 512 MiB of tensors here, warm page cache).

`tensors_fingerprint(files)` is the tensors-only part (the lab records it per checkpoint) and
`state_dict_fingerprint(state_dict)` hashes an in-memory model's tensors the same way, for models that have no
directory (it cannot equal a dir's fingerprint, which also covers configs and tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    import torch

WEIGHTS_PREFIX = "weights:"
_SCHEME = b"realignkit-weights-v1\n"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# Only pickle files that transformers/peft load as weights (a trainer's training_args.bin holds its output path).
_PICKLE_STEMS = ("pytorch_model", "adapter_model", "model")
ADAPTER_CONFIG = "adapter_config.json"
_CONFIG_FILES = ("config.json", "generation_config.json", ADAPTER_CONFIG, "tokenizer_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt",
                    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")
# Keys that name paths, library versions or bookkeeping: they differ between equal models.
_VOLATILE_KEYS = frozenset({"_name_or_path", "name_or_path", "transformers_version", "peft_version",
                            "base_model_name_or_path", "revision", "_commit_hash", "_from_model_config",
                            "inference_mode", "tokenizer_file"})
_SET_LIKE_KEYS = frozenset({"target_modules", "modules_to_save", "exclude_modules"})  # peft saves sets as lists
_TORCH_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                 "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
                 "uint64": "U64", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}


def _tensor_digest(dtype: str, shape: Iterable[int], data: Any) -> str:
    """sha256 of one tensor: safetensors dtype code, shape, then its raw little-endian bytes."""
    digest = hashlib.sha256(f"{dtype}|{list(shape)}|".encode())
    digest.update(data)
    return digest.hexdigest()


def _combine(tensors: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(f"{name}\0{tensors[name]}\n".encode())
    return digest.hexdigest()


def _file_key(path: Path) -> tuple[str, int, int, int, int]:
    """What the in-process digest caches are keyed by: any rewrite of the file changes its size, mtime or ctime
    (ctime cannot be set back by tools that preserve mtime), a replacement also its inode."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


@lru_cache(maxsize=512)
def _safetensors_digests(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> tuple[tuple[str, str], ...]:
    """(tensor name, tensor digest) for every tensor of one safetensors file (the other arguments: cache key)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise BadInputError(f"{path}: not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise BadInputError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{path}: not a safetensors file (header is not JSON)") from exc
        start = 8 + header_len
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                digests = []
                for name, info in header.items():
                    if name == "__metadata__":
                        continue
                    begin, end = info["data_offsets"]
                    if not 0 <= begin <= end <= size - start:
                        raise BadInputError(f"{path}: tensor {name!r} lies outside the file")
                    digests.append((name, _tensor_digest(info["dtype"], info["shape"], view[start + begin:start + end])))
            finally:
                view.release()
    return tuple(digests)


@lru_cache(maxsize=512)
def _bytes_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_fingerprint(files: Iterable[str | os.PathLike[str]]) -> str:
    """sha256 hex over the tensors (name, dtype, shape, bytes) of safetensors `files`, taken together."""
    tensors: dict[str, str] = {}
    for file in files:
        for name, digest in _safetensors_digests(*_file_key(Path(file))):
            if name in tensors:
                raise BadInputError(f"tensor {name!r} appears in two safetensors files ({file})")
            tensors[name] = digest
    return _combine(tensors)


def state_dict_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The same tensor hash for an in-memory torch state dict (equal to `tensors_fingerprint` of a file that
    holds exactly these tensors)."""
    import torch

    tensors = {}
    for name, tensor in state_dict.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        dtype = _TORCH_DTYPES.get(str(tensor.dtype).removeprefix("torch."), str(tensor.dtype))
        # viewed as bytes so bf16 (which numpy lacks) hashes too
        tensors[name] = _tensor_digest(dtype, tuple(tensor.shape), flat.view(torch.uint8).numpy())
    return _combine(tensors)


def _canonical(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v, k) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if key in _SET_LIKE_KEYS else items
    return value


def _config_text(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from exc
    return json.dumps(_canonical(data), sort_keys=True, ensure_ascii=False)


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    """The one test for a PEFT adapter dir: it holds adapter_config.json."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_dir(directory: Path, base: str | os.PathLike[str] | None = None) -> Path:
    """The base model dir of the PEFT adapter in `directory`: `base` when given, else its
    base_model_name_or_path, which must be a local dir (one line otherwise)."""
    if base is not None:
        return Path(base).expanduser()
    config = directory / ADAPTER_CONFIG
    try:
        named = json.loads(config.read_text()).get("base_model_name_or_path")
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{config}: not valid JSON ({exc.msg})") from exc
    if not named or not Path(named).expanduser().is_dir():
        raise BadInputError(f"adapter {str(directory)!r} names base model {named!r}, which is not a local dir; "
                            "pass --aligned PATH")
    return Path(named).expanduser()


def weights_fingerprint(model_dir: str | os.PathLike[str], base: str | os.PathLike[str] | None = None,
                        *, _depth: int = 0) -> str:
    """"weights:<sha256 hex>" of what a model dir computes (see the module docstring); `base` is the model a
    PEFT adapter dir applies to (default: its base_model_name_or_path) and is ignored for a full model dir."""
    directory = Path(model_dir).expanduser()
    if not directory.is_dir():
        raise BadInputError(f"model {str(model_dir)!r} is not a directory (give a local Hugging Face model dir)")
    files = sorted(p for p in directory.iterdir() if p.is_file())
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if p.suffix in _PICKLE_SUFFIXES and p.name.startswith(_PICKLE_STEMS)]
    if not safetensors and not pickles:
        raise BadInputError(f"{str(model_dir)!r} has no model weights (*.safetensors)")
    digest = hashlib.sha256(_SCHEME)
    if safetensors:
        digest.update(f"tensors\0{tensors_fingerprint(safetensors)}\n".encode())
    for path in pickles:
        digest.update(f"pickle:{path.name}\0{_bytes_digest(*_file_key(path))}\n".encode())
    for name in _CONFIG_FILES:
        if (directory / name).is_file():
            digest.update(f"config:{name}\0{_config_text(directory / name)}\n".encode())
    for name in _TOKENIZER_FILES:
        if (directory / name).is_file():
            digest.update(f"tokenizer:{name}\0{_bytes_digest(*_file_key(directory / name))}\n".encode())
    if is_adapter_dir(directory):
        if _depth >= 4:
            raise BadInputError(f"adapter {str(directory)!r}: its chain of base models is too deep (a cycle?)")
        base_dir = adapter_base_dir(directory, base)
        digest.update(f"base\0{weights_fingerprint(base_dir, _depth=_depth + 1)}\n".encode())
    return WEIGHTS_PREFIX + digest.hexdigest()
