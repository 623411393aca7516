"""Write a model directory: sharded safetensors streamed tensor by tensor, index, config/tokenizer copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from realignkit.checkpoints.safetensors_io import PlannedTensor, ShardFileWriter, plan_shards

DEFAULT_SHARD_BYTES = 2 * 1024**3
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_SKIP_FILES = {"model.safetensors.index.json", "pytorch_model.bin.index.json", "realignkit.json", "README.md"}
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def parse_size(text: str | int) -> int:
    """'2GB', '500MB', '64KiB' or a plain byte count -> bytes."""
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}
    raw = text.strip().upper()
    number = raw.rstrip("KMGIB")
    unit = raw[len(number) :]
    if unit not in units or not number:
        raise ValueError(f"cannot parse size {text!r} (use e.g. 2GB, 500MB, 4096)")
    return int(float(number) * units[unit])


class StreamingModelWriter:
    """Shards are planned from the known shapes, so every tensor goes to disk the moment it is computed."""

    def __init__(self, out_dir: Path, tensors: list[PlannedTensor], max_shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.out_dir = out_dir
        self.shards = plan_shards(tensors, max_shard_bytes)
        count = len(self.shards)
        self.file_names = (
            ["model.safetensors"]
            if count == 1
            else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        )
        self._shard_of = {t.name: i for i, shard in enumerate(self.shards) for t in shard}
        self._current: ShardFileWriter | None = None
        self._current_index = -1
        self.total_bytes = sum(t.nbytes for t in tensors)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write the next tensor or its next row block; tensors must arrive in plan order."""
        index = self._shard_of[name]
        if index != self._current_index:
            self._close_current()
            self._current = ShardFileWriter(
                self.out_dir / self.file_names[index], self.shards[index], metadata={"format": "pt"}
            )
            self._current_index = index
        assert self._current is not None
        self._current.write(name, tensor)

    def _close_current(self) -> None:
        if self._current is not None:
            if not self._current.complete:
                raise RuntimeError(f"shard {self._current.path.name} closed before all its tensors were written")
            self._current.close()
            self._current = None

    def finish(self) -> list[str]:
        """Close the last shard and write the index (when sharded); return the weight file names."""
        self._close_current()
        if self._current_index != len(self.shards) - 1:
            raise RuntimeError("not every planned shard was written")
        if len(self.shards) > 1:
            weight_map = {t.name: self.file_names[i] for i, shard in enumerate(self.shards) for t in shard}
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        return list(self.file_names)

    def abort(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def copy_model_files(src_dir: Path, out_dir: Path, *, dtype: torch.dtype | None = None) -> list[str]:
    """Copy config, tokenizer, chat template, generation config etc. (everything but weights) from src_dir."""
    copied = []
    for item in sorted(src_dir.iterdir()):
        if not item.is_file() or item.name in _SKIP_FILES or item.name.startswith("adapter_"):
            continue
        if item.suffix in _WEIGHT_SUFFIXES:
            continue
        shutil.copy2(item, out_dir / item.name)
        copied.append(item.name)
    config_path = out_dir / "config.json"
    if dtype is not None and dtype in _DTYPE_NAMES and config_path.is_file():
        config = json.loads(config_path.read_text())
        # Recent transformers write "dtype", older ones "torch_dtype"; keep whichever is there in sync.
        for key in ("dtype", "torch_dtype"):
            if key in config:
                config[key] = _DTYPE_NAMES[dtype]
        if "dtype" not in config and "torch_dtype" not in config:
            config["torch_dtype"] = _DTYPE_NAMES[dtype]
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return copied
