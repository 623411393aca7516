"""Utility scoring: does a response contain the expected answer?"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def normalize_answer(text: str) -> list[str]:
    """Lower-case word/number tokens, so punctuation, spacing and accents do not decide correctness
    ("Bogotá" matches "Bogota")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _WORD.findall(folded.lower())


def answer_is_correct(response: str, answer: str, match: str = "contains") -> bool:
    """True when the expected answer's tokens appear as a contiguous run in the response's tokens.

    match="exact" (an item's meta["match"]): the response's tokens must equal the answer's, for tasks whose
    output format is part of the skill (e.g. "Sentiment: positive" and nothing else).
    """
    expected = normalize_answer(answer)
    if not expected:
        return False
    got = normalize_answer(response)
    if match == "exact":
        return got == expected
    width = len(expected)
    return any(got[i : i + width] == expected for i in range(len(got) - width + 1))
