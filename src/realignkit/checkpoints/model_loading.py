"""The one way realignkit turns a local directory into a runnable transformers model or tokenizer.

One policy for the audit, calibration and the lab alike:
- local files only: a path is read, nothing is fetched from a hub (`local_files_only=True`);
- safetensors unless the caller allows pickle weights (`use_safetensors=not allow_pickle`);
- transformers' per-load progress bar is hidden while loading (our own bars show progress);
- `is_adapter_dir` (from `realignkit.common`) is the one test for a PEFT adapter dir.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from realignkit.common.fingerprint import is_adapter_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["apply_adapter", "is_adapter_dir", "load_causal_lm", "load_tokenizer", "quiet_progress"]


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide transformers' per-load progress bar for the duration, then restore what was there."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    with quiet_progress():
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_causal_lm(path: str | os.PathLike[str], *, dtype: torch.dtype | str | None = None,
                   allow_pickle: bool = False) -> PreTrainedModel:
    """An `AutoModelForCausalLM` from a local model dir; `dtype=None` keeps transformers' default."""
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    with quiet_progress():
        return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                    use_safetensors=not allow_pickle, **options)


def apply_adapter(model: PreTrainedModel, adapter_dir: str | os.PathLike[str], *, merge: bool) -> torch.nn.Module:
    """`model` with the PEFT adapter in `adapter_dir` applied: merged into the weights, or kept as a PeftModel."""
    from peft import PeftModel

    with quiet_progress():
        wrapped = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    return wrapped.merge_and_unload() if merge else wrapped
