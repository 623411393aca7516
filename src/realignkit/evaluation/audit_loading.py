"""Load a model to audit: a Hugging Face model dir, or a PEFT adapter dir on top of its base (`aligned`).

What it loads is keyed, in every cache, by `common.weights_fingerprint(path, adapter_base(path, aligned))`.

Only local directories are read (nothing comes from a hub). Pickle weights are refused unless allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.checkpoints import model_loading
from realignkit.common import BadInputError, is_adapter_dir
from realignkit.common.fingerprint import adapter_base_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def check_weights(path: Path, *, allow_pickle: bool, adapter: bool = False) -> None:
    stem = "adapter_model" if adapter else ""
    if list(path.glob(f"{stem}*.safetensors")):
        return
    if list(path.glob(f"{stem}*.bin")) or list(path.glob(f"{stem}*.pt")):
        if allow_pickle:
            return
        raise BadInputError(f"{str(path)!r} holds only pickle weights (.bin/.pt); they can run code when loaded, "
                            "so they are refused: convert to safetensors or pass --allow-pickle")
    raise BadInputError(f"{str(path)!r} has no model weights (*.safetensors)")


def _model_dir(path: str | Path, role: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise BadInputError(f"{role} {str(path)!r} is not a directory (give a local Hugging Face model dir)")
    return directory


def adapter_base(path: str | Path, aligned: str | Path | None = None) -> Path | None:
    """For a PEFT adapter dir, the base model dir (`aligned` override, else base_model_name_or_path)."""
    directory = Path(path)
    if not is_adapter_dir(directory):
        return None
    if aligned is not None:
        return _model_dir(aligned, "--aligned")
    return adapter_base_dir(directory)


def check_quantised_inputs(directory: Path, base: Path | None) -> None:
    """Refuse a quantised model, adapter or adapter base from config.json and safetensors headers alone.

    Why: realignkit's tools compare and repair floating-point weights only, and audit, diagnose --scan and the
    sweep's evaluations load through here; without the matching quantisation backend transformers would
    also fail deep inside from_pretrained with a traceback instead of one line.
    """
    from realignkit.checkpoints.quantized import check_not_quantized

    check_not_quantized(directory, f"model {str(directory)!r}")
    if base is not None:
        check_not_quantized(base, f"base model {str(base)!r} of adapter {str(directory)!r}")


def tokenizer_dir(directory: Path, fallback: Path | None = None) -> Path:
    """Where a model's tokenizer is read from: its own dir, else (an adapter without one) its base."""
    source = directory if any((directory / name).exists() for name in _TOKENIZER_FILES) else fallback
    if source is None:
        raise BadInputError(f"{str(directory)!r} has no tokenizer files")
    return source


def load_tokenizer(directory: Path, fallback: Path | None = None, template: str | Path | None = None) -> PreTrainedTokenizerBase:
    tokenizer = model_loading.load_tokenizer(tokenizer_dir(directory, fallback))
    if template is not None:
        template_path = Path(template).expanduser()
        if not template_path.is_file():
            raise BadInputError(f"--template {str(template)!r} is not a file")
        tokenizer.chat_template = template_path.read_text()
    if not getattr(tokenizer, "chat_template", None):
        raise BadInputError(f"model {str(directory)!r} has no chat template; pass --template FILE (a Jinja chat "
                            "template) to supply one")
    return tokenizer


def load_model_for_audit(
    path: str | Path,
    *,
    aligned: str | Path | None = None,
    template: str | Path | None = None,
    allow_pickle: bool = False,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generation. Adapters are merged into their base for speed."""
    import torch

    directory = _model_dir(path, "model")
    if not (directory / "config.json").exists() and not is_adapter_dir(directory):
        raise BadInputError(f"{str(path)!r} has neither config.json nor adapter_config.json")
    base = adapter_base(directory, aligned)
    torch_dtype = _torch_dtype(dtype)
    weights_dir = base if base is not None else directory
    check_weights(weights_dir, allow_pickle=allow_pickle)
    check_quantised_inputs(directory, base)
    tokenizer = load_tokenizer(directory, fallback=base, template=template)
    model = model_loading.load_causal_lm(weights_dir, dtype=torch_dtype, allow_pickle=allow_pickle)
    if base is not None:
        check_weights(directory, allow_pickle=allow_pickle, adapter=True)
        model = model_loading.apply_adapter(model, directory, merge=True)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(target).eval(), tokenizer


def _torch_dtype(dtype: str | None) -> torch.dtype | str:
    if dtype is None or dtype == "auto":
        return "auto"
    import torch

    choices = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in choices:
        raise BadInputError(f"--dtype must be one of auto, {', '.join(choices)}; got {dtype!r}")
    return choices[dtype]
