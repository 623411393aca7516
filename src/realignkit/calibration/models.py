"""Load a checkpoint as a runnable transformers model for calibration (safetensors only, never pickle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from realignkit.checkpoints import model_loading
from realignkit.common import BadInputError, is_adapter_dir

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_tokenizer(*candidates: str | os.PathLike[str] | None) -> PreTrainedTokenizerBase:
    """The first directory in `candidates` that holds a tokenizer."""
    errors = []
    for path in candidates:
        if path is None:
            continue
        try:
            return model_loading.load_tokenizer(path)
        except (OSError, ValueError, TypeError) as exc:
            errors.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise BadInputError(f"no usable tokenizer for calibration ({'; '.join(errors) or 'no directory given'})")


def load_causal_lm(
    path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> PreTrainedModel:
    """A full model directory as AutoModelForCausalLM; refuses pickle weights."""
    try:
        model = model_loading.load_causal_lm(path, dtype=dtype)
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
) -> tuple[PreTrainedModel | PeftModel, bool]:
    """(model, is_lora): the tuned model, or aligned wrapped with the tuned LoRA adapter (unmerged, via PEFT)."""
    if not is_adapter_dir(tuned):
        return load_causal_lm(tuned, dtype=dtype, device=device), False
    if aligned is None:
        raise BadInputError(
            f"--tuned {str(tuned)!r} is a LoRA adapter; calibration needs --aligned to run it"
        )
    if not (Path(tuned) / "adapter_model.safetensors").is_file():
        raise BadInputError(
            f"LoRA adapter {str(tuned)!r} has no adapter_model.safetensors (pickle files are refused)"
        )
    base = load_causal_lm(aligned, dtype=dtype, device=device)
    try:
        model = model_loading.apply_adapter(base, tuned, merge=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BadInputError(f"cannot apply LoRA adapter {str(tuned)!r} to {str(aligned)!r}: {exc}") from exc
    return model.to(device).eval(), True
