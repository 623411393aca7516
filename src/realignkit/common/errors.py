"""The one exception type that means "the user gave us bad input" (CLI: one line on stderr, exit code 2)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BadInputError(ValueError):
    """Raised for any user-facing input problem. The message must fit on one line and say what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def closest_match(word: str, choices: Iterable[str]) -> str:
    """Return a ' (did you mean X?)' suffix for the nearest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
