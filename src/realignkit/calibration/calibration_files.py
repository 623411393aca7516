"""Calibration files: JSONL loaders with line-numbered errors.

Two formats:
- prompt/response pairs (Antidote's re-alignment set: a harmful prompt and a harmful answer);
- preference triples (SOMF's safety preference set: prompt, chosen = refusal or safe answer, rejected = compliance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from realignkit.common.errors import BadInputError
from realignkit.common.jsonl import read_jsonl_objects

# One-line descriptions, printed by `realignkit repair --help` and each method's own --help.
PROMPT_RESPONSE_FORMAT = (
    'JSONL, one {"prompt": ..., "response": ...} per line: HARMFUL prompts with COMPLIANT (harmful) answers, '
    "the text whose important weights get pruned; not refusals"
)
PREFERENCE_FORMAT = (
    'JSONL, one {"prompt": ..., "chosen": ..., "rejected": ...} per line: harmful prompts, chosen = a refusal, '
    "rejected = a compliant answer"
)


@dataclass(frozen=True)
class PromptResponse:
    """One calibration text: a user prompt and the assistant answer that follows it."""

    prompt: str
    response: str


@dataclass(frozen=True)
class PreferencePair:
    """One preference example: the answer we want (`chosen`) and the one we do not (`rejected`)."""

    prompt: str
    chosen: str
    rejected: str


def _read_jsonl_rows(path: str | os.PathLike[str], what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; any problem names the file and the line."""
    return read_jsonl_objects(path, what)


def _text_field(row: dict[str, Any], field: str, path: str | os.PathLike[str], number: int) -> str:
    if field not in row:
        present = ", ".join(sorted(row)) or "none"
        raise BadInputError(f"{path} line {number}: missing field {field!r} (fields present: {present})")
    value = row[field]
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{path} line {number}: field {field!r} must be a non-empty string")
    return value


def load_prompt_response_jsonl(path: str | os.PathLike[str]) -> list[PromptResponse]:
    """Read an Antidote calibration file: one {"prompt": ..., "response": ...} object per line."""
    rows = _read_jsonl_rows(path, "calibration")
    return [
        PromptResponse(
            prompt=_text_field(row, "prompt", path, number),
            response=_text_field(row, "response", path, number),
        )
        for number, row in rows
    ]


def load_preference_jsonl(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """Read a SOMF preference file: one {"prompt", "chosen", "rejected"} object per line."""
    rows = _read_jsonl_rows(path, "preference")
    pairs = []
    for number, row in rows:
        missing = [field for field in ("chosen", "rejected") if field not in row]
        if missing:
            raise BadInputError(
                f"{path} line {number}: a preference file needs 'chosen' and 'rejected' fields; "
                f"missing {', '.join(repr(m) for m in missing)}"
            )
        pairs.append(
            PreferencePair(
                prompt=_text_field(row, "prompt", path, number),
                chosen=_text_field(row, "chosen", path, number),
                rejected=_text_field(row, "rejected", path, number),
            )
        )
    return pairs


def as_prompt_responses(pairs: Sequence[PreferencePair], which: str = "rejected") -> list[PromptResponse]:
    """View preference pairs as prompt/response texts (e.g. the rejected answers as harmful calibration text)."""
    if which not in ("chosen", "rejected"):
        raise ValueError(f"which must be 'chosen' or 'rejected', not {which!r}")
    return [PromptResponse(prompt=p.prompt, response=getattr(p, which)) for p in pairs]
