"""`MODEL+LORA` where the command cannot take the adapter as it is: fold the adapter into MODEL once, on disk.

mergekit does the same (its `lora_merge_cache`). The merged model is written one tensor at a time (θ + B·A·scaling
in MODEL's dtype) into `$REALIGNKIT_CACHE_DIR/lora-merged/<key>` (default `~/.cache/realignkit`), atomically,
keyed by the weights fingerprint of the adapter and its base, so it is built once and reused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tqdm.auto import tqdm

from realignkit.checkpoints.lora import LoraAdapterSource
from realignkit.checkpoints.reader import ModelDirSource
from realignkit.checkpoints.references import ResolvedModel, is_reference, resolve_reference
from realignkit.checkpoints.safetensors_io import PlannedTensor
from realignkit.checkpoints.writer import DEFAULT_SHARD_BYTES, StreamingModelWriter, copy_model_files
from realignkit.common.atomic import atomic_output_dir
from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import weights_fingerprint

CACHE_ENV = "REALIGNKIT_CACHE_DIR"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "realignkit"


def merge_lora_into(base: Path, lora: Path, out: Path, *, progress: bool = True) -> None:
    """Write base + LoRA as a full model dir at `out` (whole or absent)."""
    source = ModelDirSource(base, role="base of the LoRA")
    try:
        adapter = LoraAdapterSource(lora, source, role="LoRA")
        names = source.names()
        planned = [PlannedTensor(n, tuple(source.shape(n)), source.dtype(n)) for n in names]
        with atomic_output_dir(out, force=True) as tmp:
            copy_model_files(base, tmp)
            writer = StreamingModelWriter(tmp, planned, DEFAULT_SHARD_BYTES)
            for name in tqdm(names, desc="merge LoRA", unit="tensor", disable=None if progress else True, leave=False):
                writer.write(name, adapter.get(name) if source.dtype(name).is_floating_point else source.get(name))
            writer.finish()
    finally:
        source.close()


def merged_model_dir(base: Path, lora: Path, *, progress: bool = True) -> Path:
    """The cached full model of base + LoRA (built on first use)."""
    key = hashlib.sha256(weights_fingerprint(lora, base).encode()).hexdigest()[:24]
    out = cache_root() / "lora-merged" / key
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        merge_lora_into(base, lora, out, progress=progress)
    return out


def local_model(
    text: str | os.PathLike[str] | ResolvedModel,
    *,
    role: str,
    adapter_base: str | os.PathLike[str] | None = None,
    search_dirs: list[Path] | None = None,
    progress: bool = True,
) -> tuple[Path, ResolvedModel]:
    """A local dir a command can open for the reference `text`, and the resolved reference (provenance).

    `text` may be a reference already resolved. `MODEL+LORA` gives the adapter dir itself when MODEL is `adapter_base` (the role the command applies
    adapters to, e.g. --aligned), else a cached merged copy (see `merged_model_dir`).
    """
    if isinstance(text, ResolvedModel):
        resolved = text
    else:
        resolved = resolve_reference(text, role=role, search_dirs=search_dirs)
    if resolved.lora is None:
        return resolved.model.path, resolved
    if adapter_base is not None and _same_dir(resolved.model.path, Path(adapter_base)):
        return resolved.lora.path, resolved
    return merged_model_dir(resolved.model.path, resolved.lora.path, progress=progress), resolved


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False


def local_dir(text: str | os.PathLike[str] | None, role: str, adapter_base: str | None = None) -> str | None:
    """A local dir for a model argument (hub snapshot, or a merged `MODEL+LORA` unless MODEL is `adapter_base`);
    anything else is returned as it is, for the command's own checks and messages."""
    if text is None or not is_reference(text):
        return None if text is None else os.fspath(text)
    return str(local_model(text, role=role, adapter_base=adapter_base)[0])


def model_and_base(text: str | None, base: str | None, role: str, base_flag: str) -> tuple[str | None, str | None]:
    """For commands that load an adapter on top of its base (audit): `MODEL+LORA` -> (adapter dir, MODEL dir)."""
    if text is None or not is_reference(text):
        return text, local_dir(base, base_flag)
    resolved = resolve_reference(text, role=role)
    if resolved.lora is None:
        return str(resolved.model.path), local_dir(base, base_flag)
    if base is not None:
        raise BadInputError(f"{role} {text!r} already names the LoRA's base model; drop {base_flag}")
    return str(resolved.lora.path), str(resolved.model.path)
