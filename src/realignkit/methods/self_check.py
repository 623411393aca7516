"""Self-check after a repair: does the repaired model still model plain English about as well as `aligned`?

A repair can destroy a model while every tensor stays finite and well-shaped (Antidote's plain Wanda formula
on a real model zeroes the weights reading its massive-activation features and turns it into gibberish). So the
engine, after writing the output, computes the perplexity of a fixed reference text under the repaired model
and under `aligned`. When ppl_repaired > ratio × ppl_aligned (default 2) the repair is flagged as broken: one
warning line on stderr and ``self_check.broken = true`` in the output's realignkit.json. The exit code does not
change unless the caller asks (``realignkit repair --fail-if-broken``).

The reference text is a short neutral English corpus shipped with the package (data/self_check_reference.txt,
written for this purpose), or any UTF-8 text file the user gives. A tokenizer that maps most of it to its
unknown token (a toy vocabulary) cannot measure anything: the check is then skipped, with the reason recorded.
A model too big for the memory at hand is skipped the same way. Nothing here ever fails the repair.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from realignkit.common import is_adapter_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_RATIO = 2.0
REFERENCE_RESOURCE = "self_check_reference.txt"
MAX_UNKNOWN_SHARE = 0.5
MAX_TOKENS = 2048
WINDOW = 512

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class SelfCheckOptions:
    ratio: float = DEFAULT_RATIO
    text: PathLike | None = None  # None: the built-in reference text
    device: str = "auto"


class _Skip(Exception):
    """The check cannot run meaningfully here; the message is recorded as the reason."""


def reference_text(path: PathLike | None = None) -> tuple[str, str]:
    """(text, label): a user file, or the shipped neutral English corpus."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        if not text.strip():
            raise _Skip(f"the self-check text {str(path)!r} is empty")
        return text, str(path)
    text = resources.files("realignkit.data").joinpath(REFERENCE_RESOURCE).read_text(encoding="utf-8")
    return text, f"builtin:{REFERENCE_RESOURCE}"


def encode_reference(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """Token ids [n] of `text` (the tokenizer's own BOS handling), at most max_tokens; _Skip when unusable."""
    ids = list(tokenizer(text)["input_ids"])[:max_tokens]
    if len(ids) < 2:
        raise _Skip("the self-check text is shorter than two tokens")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and sum(i == unk for i in ids) > MAX_UNKNOWN_SHARE * len(ids):
        raise _Skip(
            "the tokenizer maps most of the self-check text to its unknown token; give --self-check-text"
        )
    return torch.tensor(ids, dtype=torch.long)


def _window(model: torch.nn.Module) -> int:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return max(2, min(WINDOW, int(limit))) if isinstance(limit, int) and limit > 0 else WINDOW


@torch.no_grad()
def perplexity(model: torch.nn.Module, ids: torch.Tensor, window: int | None = None) -> float:
    """exp(mean next-token NLL) of the token sequence `ids` [n], in non-overlapping windows of `window` tokens."""
    window = window or _window(model)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, ids.numel(), window):
        chunk = ids[start : start + window]
        if chunk.numel() < 2:
            continue
        chunk = chunk.unsqueeze(0).to(device)
        logits = model(input_ids=chunk, use_cache=False).logits.float()  # [1, t, vocab]
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
        total += float(nll)
        count += chunk.numel() - 1
    mean = total / max(count, 1)
    return math.exp(mean) if mean < 700 else float("inf")  # exp overflows past ~709


def _weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_dtype(model_dir: Path, device: str) -> torch.dtype:
    """fp32 when it fits comfortably, else bf16; _Skip when even bf16 would not (a repair streams, a check can't)."""
    stored = _weights_bytes(model_dir)
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
    else:
        import psutil

        free = psutil.virtual_memory().available
    if 2 * stored < 0.4 * free:  # stored may be 2-byte: fp32 is at most twice the files
        return torch.float32
    if stored < 0.4 * free:
        return torch.bfloat16
    raise _Skip(f"the model ({stored / 2**30:.1f} GiB) is too big to load for a self-check on {device}")


_REFERENCE_CACHE: dict[tuple[str, ...], float] = {}


def _fingerprint(path: Path) -> str:
    files = sorted(path.glob("*.safetensors"))
    parts = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return hashlib.sha256("|".join([str(path.resolve()), *parts]).encode()).hexdigest()[:16]


def _ppl_of(model_dir: Path, aligned: Path | None, ids: torch.Tensor, device: str) -> float:
    from realignkit.calibration.models import load_calibration_model

    size_dir = aligned if aligned is not None and is_adapter_dir(model_dir) else model_dir
    dtype = _load_dtype(size_dir, device)
    model, _ = load_calibration_model(model_dir, aligned, dtype=dtype, device=device)
    try:
        return perplexity(model, ids)
    finally:
        del model


def self_check(
    out_dir: PathLike, aligned: PathLike, options: SelfCheckOptions | None = None
) -> dict[str, Any]:
    """Perplexity of the reference text under the model at `out_dir` (a full dir, or a LoRA adapter on
    `aligned`) and under `aligned`: {ppl_repaired, ppl_reference, ratio, threshold, broken, ...}, or
    {skipped: reason}. Never raises for a model it cannot check."""
    from realignkit.calibration.models import load_tokenizer

    opts = options or SelfCheckOptions()
    started = time.time()
    out_dir, aligned = Path(out_dir), Path(aligned)
    try:
        text, label = reference_text(opts.text)
        tokenizer = load_tokenizer(out_dir, aligned)
        ids = encode_reference(tokenizer, text)
        device = _device(opts.device)
        key = (_fingerprint(aligned), hashlib.sha256(ids.numpy().tobytes()).hexdigest(), device)
        if key not in _REFERENCE_CACHE:  # a sweep checks many candidates against the same aligned model
            _REFERENCE_CACHE[key] = _ppl_of(aligned, None, ids, device)
        ppl_reference = _REFERENCE_CACHE[key]
        ppl_repaired = _ppl_of(out_dir, aligned, ids, device)
    except _Skip as exc:
        return {"skipped": str(exc), "seconds": round(time.time() - started, 3)}
    except Exception as exc:  # noqa: BLE001 - a check that cannot run must never fail a finished repair
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"skipped": f"could not run: {first}", "seconds": round(time.time() - started, 3)}
    ratio = ppl_repaired / ppl_reference if ppl_reference > 0 else float("inf")
    broken = not math.isfinite(ppl_repaired) or ratio > opts.ratio
    return {
        "ppl_repaired": _rounded(ppl_repaired),
        "ppl_reference": _rounded(ppl_reference),
        "reference_model": "aligned",
        "ratio": _rounded(ratio),
        "threshold": opts.ratio,
        "broken": bool(broken),
        "text": label,
        "tokens": int(ids.numel()),
        "seconds": round(time.time() - started, 3),
    }


def _rounded(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None  # JSON has no inf


def warning_line(result: dict[str, Any]) -> str | None:
    """The one stderr line for a broken repair, else None."""
    if not result.get("broken"):
        return None
    repaired = result.get("ppl_repaired")
    shown = f"{repaired:.3g}" if repaired is not None else "inf"
    return (
        f"realignkit repair: WARNING: the repaired model looks broken: perplexity {shown} vs "
        f"{result['ppl_reference']:.3g} for aligned on the self-check text (more than {result['threshold']:g}x); "
        "inspect it before use (self_check in realignkit.json)"
    )


def report(result: dict[str, Any]) -> None:
    line = warning_line(result)
    if line is not None:
        print(line, file=sys.stderr, flush=True)
