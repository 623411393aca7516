"""Load a checkpoint as a runnable transformers model for calibration (safetensors only, never pickle)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from realignkit.common.errors import BadInputError


def is_lora_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(*candidates: str | os.PathLike[str] | None) -> Any:
    """The first directory in `candidates` that holds a tokenizer."""
    from transformers import AutoTokenizer

    errors = []
    for path in candidates:
        if path is None:
            continue
        try:
            return AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, TypeError) as exc:
            errors.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise BadInputError(f"no usable tokenizer for calibration ({'; '.join(errors) or 'no directory given'})")


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load progress bar: stderr stays one line on errors, our own bars show progress."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_causal_lm(
    path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Any:
    """A full model directory as AutoModelForCausalLM; refuses pickle weights."""
    from transformers import AutoModelForCausalLM

    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(
            f"calibration cannot load {str(path)!r} as a causal LM (safetensors only): {first}"
        ) from exc
    return model.to(device).eval()


def load_calibration_model(
    tuned: str | os.PathLike[str],
    aligned: str | os.PathLike[str] | None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> tuple[Any, bool]:
    """(model, is_lora): the tuned model, or aligned wrapped with the tuned LoRA adapter (unmerged, via PEFT)."""
    if not is_lora_adapter_dir(tuned):
        return load_causal_lm(tuned, dtype=dtype, device=device), False
    if aligned is None:
        raise BadInputError(
            f"--tuned {str(tuned)!r} is a LoRA adapter; calibration needs --aligned to run it"
        )
    if not (Path(tuned) / "adapter_model.safetensors").is_file():
        raise BadInputError(
            f"LoRA adapter {str(tuned)!r} has no adapter_model.safetensors (pickle files are refused)"
        )
    from peft import PeftModel

    base = load_causal_lm(aligned, dtype=dtype, device=device)
    try:
        model = PeftModel.from_pretrained(base, str(tuned))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BadInputError(f"cannot apply LoRA adapter {str(tuned)!r} to {str(aligned)!r}: {exc}") from exc
    return model.to(device).eval(), True
