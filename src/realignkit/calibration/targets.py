"""Target selection: which linear layers a data-driven method touches, chosen by module-name globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from realignkit.common.errors import BadInputError

# Antidote's reference code prunes the attention projections of a full fine-tune.
DEFAULT_ATTENTION_TARGETS: tuple[str, ...] = ("*q_proj", "*k_proj", "*v_proj")


def normalize_globs(targets: str | Sequence[str]) -> list[str]:
    """Accept 'a,b' or ['a', 'b']; a bare name like 'q_proj' matches any module ending in it."""
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    globs = [item.strip() for item in items if item and item.strip()]
    if not globs:
        raise BadInputError("targets is empty; give module-name globs such as '*q_proj,*v_proj'")
    return [g if any(ch in g for ch in "*?[") or g.count(".") > 1 else f"*{g}" for g in globs]


def module_matches(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in globs)


def select_targets(names: Iterable[str], targets: str | Sequence[str]) -> list[str]:
    """Names matching any glob, in input order. Every glob must match something (a typo is an error)."""
    globs = normalize_globs(targets)
    names = list(names)
    for pattern in globs:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            examples = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names})[:8])
            raise BadInputError(
                f"target glob {pattern!r} matches no linear module of the model (module name endings: {examples})"
            )
    return [n for n in names if module_matches(n, globs)]
