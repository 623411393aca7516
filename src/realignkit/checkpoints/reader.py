"""Read Hugging Face model directories tensor by tensor (safetensors single/sharded; pickle only if allowed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from realignkit.checkpoints.quantized import check_config, check_tensors, header_dtypes
from realignkit.checkpoints.safetensors_io import TensorInfo, read_header, read_rows, read_tensor
from realignkit.common.errors import BadInputError

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"


def _read_index(index_path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BadInputError(f"index {str(index_path)!r} is not a valid shard index (no weight_map)") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadInputError(f"index {str(index_path)!r} has an empty weight_map")
    return weight_map


def _shard_files(weight_map: dict[str, str], root: Path, index_path: Path) -> list[Path]:
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise BadInputError(f"index {str(index_path)!r} names missing shard file(s): {', '.join(missing)}")
    return [root / f for f in files]


class ModelDirSource:
    """A full model directory opened for streaming reads. Nothing is loaded until `get(name)`."""

    is_adapter = False

    def __init__(self, path: str | os.PathLike[str], *, role: str, allow_pickle: bool = False) -> None:
        self.path = Path(path)
        self.role = role
        self._infos: dict[str, tuple[Path, TensorInfo]] = {}
        self._fds: dict[Path, int] = {}
        self._pickled: dict[str, tuple[Path, torch.Tensor | None]] = {}
        self._pickle_cache: dict[Path, dict[str, torch.Tensor]] = {}
        if not self.path.is_dir():
            raise BadInputError(f"--{role} {str(path)!r} is not a directory")
        self._label = f"--{role} {str(path)!r}"
        # Quantised weights would be "repaired" into garbage: refuse before reading anything but metadata.
        check_config(self.path, self._label)
        if (self.path / SAFE_INDEX).is_file() or (self.path / SAFE_SINGLE).is_file():
            self._open_safetensors()
        elif (self.path / PICKLE_INDEX).is_file() or (self.path / PICKLE_SINGLE).is_file():
            if not allow_pickle:
                raise BadInputError(
                    f"--{role} {str(path)!r} has only pickle weights (.bin); pass --allow-pickle to load them "
                    "(with torch weights_only=True) or convert to safetensors"
                )
            self._open_pickle()
        else:
            raise BadInputError(
                f"--{role} {str(path)!r} has no model weights (model.safetensors, an index, or pytorch_model.bin)"
            )

    def _open_safetensors(self) -> None:
        index_path = self.path / SAFE_INDEX
        if index_path.is_file():
            weight_map = _read_index(index_path)
            files = _shard_files(weight_map, self.path, index_path)
        else:
            weight_map, files = None, [self.path / SAFE_SINGLE]
        for file in files:  # lenient header pass first: quantised files may hold dtypes read_header refuses
            check_tensors(header_dtypes(file), self._label, file.name)
        for file in files:
            infos, _ = read_header(file)
            for name, info in infos.items():
                self._infos[name] = (file, info)
        if weight_map is not None:
            absent = [n for n, f in weight_map.items() if n not in self._infos or self._infos[n][0].name != f]
            if absent:
                raise BadInputError(
                    f"index of --{self.role} names {len(absent)} tensor(s) its shards lack, e.g. {absent[0]!r} "
                    "(missing or truncated shard?)"
                )
        for file in files:
            self._fds[file] = os.open(file, os.O_RDONLY)

    def _open_pickle(self) -> None:
        index_path = self.path / PICKLE_INDEX
        if index_path.is_file():
            weight_map = _read_index(index_path)
            files = _shard_files(weight_map, self.path, index_path)
        else:
            files = [self.path / PICKLE_SINGLE]
        for file in files:
            state = self._load_pickle(file)
            check_tensors(((name, tensor.dtype) for name, tensor in state.items()), self._label, file.name)
            for name in state:
                self._pickled[name] = (file, None)

    def _load_pickle(self, file: Path) -> dict[str, torch.Tensor]:
        if file not in self._pickle_cache:
            try:
                # weights_only refuses arbitrary objects; mmap keeps the file out of memory until used.
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:
                raise BadInputError(f"cannot load pickle shard {str(file)!r}: {str(exc).splitlines()[0]}") from None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise BadInputError(f"pickle shard {str(file)!r} is not a dict of tensors")
            self._pickle_cache[file] = state
        return self._pickle_cache[file]

    def names(self) -> list[str]:
        return list(self._infos) if self._infos else list(self._pickled)

    def __contains__(self, name: str) -> bool:
        return name in self._infos or name in self._pickled

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._infos:
            return self._infos[name][1].shape
        return tuple(self._pickle_tensor(name).shape)

    def dtype(self, name: str) -> torch.dtype:
        if name in self._infos:
            return self._infos[name][1].dtype
        return self._pickle_tensor(name).dtype

    def _pickle_tensor(self, name: str) -> torch.Tensor:
        file, _ = self._pickled[name]
        return self._load_pickle(file)[name]

    def get(self, name: str) -> torch.Tensor:
        """The stored tensor (stored dtype), read fresh from disk."""
        if name in self._infos:
            file, info = self._infos[name]
            return read_tensor(self._fds[file], info)
        return self._pickle_tensor(name).clone()

    def get_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of a tensor along dim 0, reading only those bytes."""
        if name in self._infos:
            file, info = self._infos[name]
            return read_rows(self._fds[file], info, start, stop)
        return self._pickle_tensor(name)[start:stop].clone()

    def files(self) -> list[Path]:
        return sorted({f for f, _ in self._infos.values()} | {f for f, _ in self._pickled.values()})

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._pickle_cache.clear()

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": "model", "tensors": len(self.names())}
