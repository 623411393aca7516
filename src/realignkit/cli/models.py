"""Model arguments of every command: local dirs or references (`org/name[@revision]`, `MODEL+LORA`)."""

from __future__ import annotations

from realignkit.common.errors import BadInputError


def local_dir(text: str | None, role: str, adapter_base: str | None = None) -> str | None:
    """A local dir for a model argument (hub snapshot, or a merged `MODEL+LORA` unless MODEL is `adapter_base`)."""
    if text is None:
        return None
    from realignkit.checkpoints.lora_merge import local_model

    return str(local_model(text, role=role, adapter_base=adapter_base)[0])


def model_and_base(text: str | None, base: str | None, role: str, base_flag: str) -> tuple[str | None, str | None]:
    """For commands that load an adapter on top of its base: `MODEL+LORA` -> (adapter dir, MODEL dir)."""
    if text is None:
        return None, local_dir(base, base_flag)
    from realignkit.checkpoints.references import resolve_reference

    resolved = resolve_reference(text, role=role)
    if resolved.lora is None:
        return str(resolved.model.path), local_dir(base, base_flag)
    if base is not None:
        raise BadInputError(f"{role} {text!r} already names the LoRA's base model; drop {base_flag}")
    return str(resolved.lora.path), str(resolved.model.path)
