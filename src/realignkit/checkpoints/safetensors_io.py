"""Minimal safetensors reading and streaming writing, one tensor at a time.

Why our own instead of `safetensors.safe_open`: reads go straight from the file into a fresh tensor with
`preadv` (no mmap, so resident memory stays at a few tensors even on huge checkpoints), a truncated
file is detected from the header before any work starts, and the writer streams each tensor to disk as soon
as it is computed because the header is planned up front from the known shapes.
Format: 8-byte little-endian header length N, N bytes of JSON header, then the raw tensor bytes.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from realignkit.common.errors import BadInputError

DTYPE_FROM_CODE: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
CODE_FROM_DTYPE = {dtype: code for code, dtype in DTYPE_FROM_CODE.items()}
_MAX_HEADER = 100 * 1024 * 1024
_MAX_READ = 1 << 30  # Linux caps one read at ~2 GiB; read big tensors in pieces


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives inside a safetensors file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


def dtype_nbytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and check a safetensors header; BadInputError if the file is truncated or not safetensors."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise BadInputError(f"shard {str(path)!r} is truncated or empty ({size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER, size - 8):
            raise BadInputError(f"shard {str(path)!r} is truncated or not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadInputError(f"shard {str(path)!r} has an unreadable header (truncated or corrupt)") from None
    data_start = 8 + header_len
    metadata = header.pop("__metadata__", None) or {}
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        code = entry.get("dtype")
        if code not in DTYPE_FROM_CODE:
            raise BadInputError(f"shard {str(path)!r}: tensor {name!r} has unsupported dtype {code!r}")
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        dtype = DTYPE_FROM_CODE[code]
        if end - begin != math.prod(shape) * dtype_nbytes(dtype) or begin > end:
            raise BadInputError(f"shard {str(path)!r}: tensor {name!r} has inconsistent offsets (corrupt file)")
        if data_start + end > size:
            raise BadInputError(
                f"shard {str(path)!r} is truncated: tensor {name!r} ends at byte {data_start + end}, file has {size}"
            )
        infos[name] = TensorInfo(dtype=dtype, shape=shape, start=data_start + begin, nbytes=end - begin)
    return infos, metadata


def _read_bytes(fd: int, start: int, nbytes: int) -> torch.Tensor:
    raw = torch.empty(nbytes, dtype=torch.uint8)
    view = memoryview(raw.numpy())
    done = 0
    while done < nbytes:
        got = os.preadv(fd, [view[done : done + _MAX_READ]], start + done)
        if got <= 0:
            raise BadInputError(f"unexpected end of file while reading a tensor at byte {start + done}")
        done += got
    return raw


def read_tensor(fd: int, info: TensorInfo) -> torch.Tensor:
    """Read one tensor with positional reads (thread-safe on a shared fd) into freshly allocated memory."""
    if info.nbytes == 0:
        return torch.empty(info.shape, dtype=info.dtype)
    return _read_bytes(fd, info.start, info.nbytes).view(info.dtype).reshape(info.shape)


def read_rows(fd: int, info: TensorInfo, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) along dim 0: a contiguous byte range of a row-major tensor, read without the rest."""
    rest = info.shape[1:]
    row_bytes = math.prod(rest) * dtype_nbytes(info.dtype)
    count = max(0, stop - start)
    if count == 0 or row_bytes == 0:
        return torch.empty((count, *rest), dtype=info.dtype)
    raw = _read_bytes(fd, info.start + start * row_bytes, count * row_bytes)
    return raw.view(info.dtype).reshape((count, *rest))


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * dtype_nbytes(self.dtype)


def plan_shards(tensors: list[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Split tensors, in order, into shards of at most max_shard_bytes (a bigger single tensor gets its own)."""
    shards: list[list[PlannedTensor]] = [[]]
    used = 0
    for tensor in tensors:
        if shards[-1] and used + tensor.nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(tensor)
        used += tensor.nbytes
    return shards


def encode_header(tensors: list[PlannedTensor], metadata: dict[str, str]) -> bytes:
    """Header bytes (length prefix + JSON padded to 8 bytes) for tensors stored back to back in this order."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {
            "dtype": CODE_FROM_DTYPE[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body


class ShardFileWriter:
    """Writes one planned shard: header first, then each tensor in plan order as it arrives.

    A tensor may arrive whole or as consecutive row blocks (dim-0 slices), which lets big tensors be
    computed and written in pieces.
    """

    def __init__(self, path: Path, tensors: list[PlannedTensor], metadata: dict[str, str]) -> None:
        self.path = path
        self._expected = list(tensors)
        self._next = 0
        self._written = 0  # bytes of the current tensor written so far
        self._handle = path.open("wb")
        self._handle.write(encode_header(tensors, metadata))

    def write(self, name: str, piece: torch.Tensor) -> None:
        planned = self._expected[self._next]
        whole = tuple(piece.shape) == planned.shape
        rows_match = piece.dim() == len(planned.shape) and tuple(piece.shape[1:]) == planned.shape[1:]
        if name != planned.name or piece.dtype != planned.dtype or not (whole or rows_match):
            raise RuntimeError(f"writer got {name} {tuple(piece.shape)} {piece.dtype}, planned {planned}")
        data = piece.contiguous().reshape(-1).view(torch.uint8).numpy()
        if self._written + data.nbytes > planned.nbytes:
            raise RuntimeError(f"writer got more bytes than planned for {name}")
        self._handle.write(memoryview(data))
        self._written += data.nbytes
        if self._written == planned.nbytes:
            self._next += 1
            self._written = 0

    @property
    def complete(self) -> bool:
        return self._next == len(self._expected)

    def close(self) -> None:
        self._handle.close()
