"""Name maps between a VLM and its LLM parent, and between PEFT adapter keys and model tensor names.

Every tensor name is reduced to a canonical LLM-style name, so that
``language_model.model.layers.3.mlp.up_proj.weight`` (older VLMs),
``model.language_model.layers.3.mlp.up_proj.weight`` (newer transformers) and
``model.layers.3.mlp.up_proj.weight`` (the LLM) all meet as the same key.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from realignkit.common.errors import BadInputError

# (prefix, replacement), tried in order; the first match wins.
_VLM_PREFIXES = (
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model."),
    ("language_model.", "model."),
)
_PEFT_PREFIX = "base_model.model."


def canonical_name(name: str) -> str:
    """The LLM-style name of a tensor, whatever wrapper (VLM, PEFT) it sits in."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX) :]
    for prefix, replacement in _VLM_PREFIXES:
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def canonical_index(names: Iterable[str], *, source: str) -> dict[str, str]:
    """Map canonical name -> stored name; two stored names with one canonical name is an error."""
    index: dict[str, str] = {}
    for name in names:
        key = canonical_name(name)
        if key in index:
            raise BadInputError(f"{source}: tensors {index[key]!r} and {name!r} map to the same name {key!r}")
        index[key] = name
    return index


_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.lora_(?P<part>A|B|embedding_A|embedding_B)(?:\.(?P<adapter>[A-Za-z0-9_\-]+))??(?:\.weight)?$"
)


def parse_lora_key(key: str) -> tuple[str, str] | None:
    """`base_model.model.model.layers.0.self_attn.q_proj.lora_A[.default].weight` -> (module name, 'A')."""
    match = _LORA_KEY.match(key)
    if match is None:
        return None
    module = match.group("module")
    if module.startswith(_PEFT_PREFIX):
        module = module[len(_PEFT_PREFIX) :]
    return module, match.group("part")


def module_of(tensor_name: str) -> str:
    """`model.layers.0.self_attn.q_proj.weight` -> `model.layers.0.self_attn.q_proj`."""
    return tensor_name.rsplit(".", 1)[0] if "." in tensor_name else tensor_name


def module_matches(module: str, patterns: Iterable[str] | str) -> bool:
    """True when a module name matches a glob list or a PEFT-style regex string.

    A list entry matches the whole module name as a glob, or its tail after a dot
    (so `q_proj` and `self_attn.*` both match `model.layers.0.self_attn.q_proj`), as PEFT does for lists.
    A plain string is a PEFT regex matched against the whole module name.
    """
    if isinstance(patterns, str):
        return re.fullmatch(patterns, module) is not None
    for pattern in patterns:
        if fnmatch.fnmatchcase(module, pattern) or fnmatch.fnmatchcase(module, f"*.{pattern}"):
            return True
    return False


def layer_index(name: str) -> int | None:
    """The decoder layer number in a tensor name (`...layers.7...` -> 7), or None outside the layer stack."""
    match = re.search(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.", canonical_name(name))
    return int(match.group(1)) if match else None
