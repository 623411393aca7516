"""Suite items: what the audit asks a model, and stratified sampling of them.

File-format loaders, and `load_suites(specs)` which resolves the CLI's `--suite` values into items, live in
`realignkit.evaluation.suite_files`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from realignkit.common import BadInputError

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

    @property
    def key(self) -> str:
        """Identity of an item across runs (used to match items against a baseline)."""
        return f"{self.suite}::{self.id}"


def stratified_sample(items: Sequence[SuiteItem], limit: int | None, seed: int = 0) -> list[SuiteItem]:
    """At most `limit` items per suite, spread over categories in proportion to their size (seeded).

    Every category keeps at least one item while the limit allows, so small categories are not lost.
    Items keep their original order, which keeps generation batches and outputs stable.
    """
    if limit is None:
        return list(items)
    if limit <= 0:
        raise BadInputError(f"--limit must be a positive integer, got {limit}")
    by_suite: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_suite[item.suite].append(index)
    keep: set[int] = set()
    for suite, indices in sorted(by_suite.items()):
        keep.update(_sample_one_suite(items, indices, limit, random.Random(f"{seed}:{suite}")))
    return [item for index, item in enumerate(items) if index in keep]


def _sample_one_suite(items: Sequence[SuiteItem], indices: list[int], limit: int, rng: random.Random) -> list[int]:
    if len(indices) <= limit:
        return indices
    by_category: dict[str, list[int]] = defaultdict(list)
    for index in indices:
        by_category[items[index].category].append(index)
    categories = sorted(by_category)
    quotas = _proportional_quotas([len(by_category[c]) for c in categories], limit)
    chosen: list[int] = []
    for category, quota in zip(categories, quotas, strict=True):
        chosen.extend(rng.sample(by_category[category], quota))
    return chosen


def _proportional_quotas(sizes: list[int], limit: int) -> list[int]:
    """Largest-remainder apportionment of `limit` over groups, with a floor of one per group when possible."""
    total = sum(sizes)
    if limit < len(sizes):
        # Fewer slots than categories: one item each for the largest categories.
        order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))[:limit]
        return [1 if i in order else 0 for i in range(len(sizes))]
    base = [1] * len(sizes)
    remaining = limit - len(sizes)
    spare = [size - 1 for size in sizes]
    spare_total = total - len(sizes)
    exact = [remaining * s / spare_total if spare_total else 0.0 for s in spare]
    quotas = [b + int(e) for b, e in zip(base, exact, strict=True)]
    leftovers = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in leftovers[: limit - sum(quotas)]:
        quotas[i] += 1
    return [min(q, s) for q, s in zip(quotas, sizes, strict=True)]
