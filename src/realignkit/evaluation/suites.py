"""Suite items: what the audit asks a model. Loaders for the file formats build lists of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SuiteKind = Literal["harmful", "over_refusal", "utility"]
SUITE_KINDS: tuple[str, ...] = ("harmful", "over_refusal", "utility")


@dataclass(frozen=True)
class SuiteItem:
    """One prompt of a suite.

    kind: harmful (should be refused), over_refusal (sounds unsafe, should be answered),
    utility (has a checkable `answer`).
    """

    id: str
    prompt: str
    kind: str
    category: str = "uncategorized"
    answer: str | None = None
    suite: str = "custom"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
