"""Pareto front and the pick rule, on plain numbers (no models here).

Objectives, all measured on the SELECTION split:
- harmful_rate (lower is better): share of harmful prompts answered instead of refused;
- utility_retained (higher is better): utility accuracy relative to `tuned`'s on the same split, taken per
  utility suite and reduced to the WORST suite, so a repair cannot pass the floor by trading the fine-tune's
  own task for general skills the fine-tune had lost (or the other way round);
- over_refusal_rate (lower is better): share of benign-but-scary prompts refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """A candidate's selection-split scores. None means "not measured" (e.g. a suite kind was absent)."""

    id: str
    harmful_rate: float | None
    utility_retained: float | None
    over_refusal_rate: float | None

    def as_minimised(self) -> tuple[float, float, float]:
        """All three objectives as "lower is better"; an unmeasured objective never decides dominance."""
        return (
            self.harmful_rate if self.harmful_rate is not None else 0.0,
            -self.utility_retained if self.utility_retained is not None else 0.0,
            self.over_refusal_rate if self.over_refusal_rate is not None else 0.0,
        )


def dominates(a: Point, b: Point) -> bool:
    """a is no worse than b on every objective and strictly better on one."""
    va, vb = a.as_minimised(), b.as_minimised()
    return all(x <= y for x, y in zip(va, vb, strict=True)) and any(x < y for x, y in zip(va, vb, strict=True))


def pareto_front(points: Sequence[Point]) -> list[str]:
    """Ids of the points no other point dominates, in input order."""
    return [p.id for p in points if not any(dominates(q, p) for q in points if q.id != p.id)]


@dataclass(frozen=True)
class Pick:
    id: str | None
    meets_floor: bool
    reason: str


def _utility_ok(point: Point, floor: float) -> bool:
    # utility_retained None means tuned had no measurable utility: every candidate then retains "all" of it.
    return point.utility_retained is None or point.utility_retained >= floor - 1e-12


def pick_winner(points: Sequence[Point], floor: float) -> Pick:
    """Lowest harmfulness among candidates whose utility >= floor x tuned's (ties: more utility, then less
    over-refusal, then sweep order). When none meets the floor, the best available is the one retaining the
    most utility (ties: less harm), and the returned Pick says it misses the floor."""
    if not points:
        return Pick(None, False, "no candidate was evaluated")
    order = {p.id: i for i, p in enumerate(points)}
    eligible = [p for p in points if _utility_ok(p, floor)]
    if eligible:
        best = min(eligible, key=lambda p: (*_harm_first(p), order[p.id]))
        return Pick(best.id, True, _reason_meets(best, floor, len(eligible), len(points)))
    best = min(points, key=lambda p: (-(p.utility_retained or 0.0), p.harmful_rate or 0.0, order[p.id]))
    return Pick(best.id, False, _reason_misses(best, floor))


def _harm_first(p: Point) -> tuple[float, float, float]:
    harm, neg_utility, over = p.as_minimised()
    return harm, neg_utility, over


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _reason_meets(best: Point, floor: float, eligible: int, total: int) -> str:
    if best.utility_retained is None:
        return (
            f"lowest harmfulness ({_pct(best.harmful_rate)}, selection split); tuned has no measurable utility on "
            f"this split, so all {total} candidates pass the utility floor"
        )
    return (
        f"lowest harmfulness ({_pct(best.harmful_rate)}, selection split) among the {eligible} of {total} "
        f"candidates keeping utility >= {floor:g} x tuned's (it keeps {_pct(best.utility_retained)})"
    )


def _reason_misses(best: Point, floor: float) -> str:
    return (
        f"NO candidate keeps utility >= {floor:g} x tuned's on the selection split; best available shown: it "
        f"keeps the most utility ({_pct(best.utility_retained)}), harmfulness {_pct(best.harmful_rate)}"
    )


def utility_retained(metrics: Mapping[str, Any], tuned: Mapping[str, Any] | float | None) -> float | None:
    """Worst per-suite ratio candidate_accuracy / tuned_accuracy over the suites where tuned scores > 0.

    `tuned` may also be a bare utility number (one ratio of the overall utilities). None when tuned has no
    measurable utility."""
    if not isinstance(tuned, Mapping):
        utility = metrics.get("utility")
        return None if utility is None or not tuned else utility / tuned
    tuned_by_suite = {k: v for k, v in (tuned.get("utility_by_suite") or {}).items() if v}
    if not tuned_by_suite:
        return utility_retained(metrics, tuned.get("utility"))
    mine = metrics.get("utility_by_suite") or {}
    return min((mine.get(suite) or 0.0) / accuracy for suite, accuracy in tuned_by_suite.items())


def point_from_metrics(candidate_id: str, metrics: Mapping[str, Any], tuned: Mapping[str, Any] | float | None) -> Point:
    """Build a Point from a metrics dict ({harmful_rate, utility, utility_by_suite, over_refusal_rate}) and
    tuned's metrics on the same split (or tuned's bare utility)."""
    retained = utility_retained(metrics, tuned)
    return Point(candidate_id, metrics.get("harmful_rate"), retained, metrics.get("over_refusal_rate"))
