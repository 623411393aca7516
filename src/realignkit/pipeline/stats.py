"""How sure a sweep's numbers are: Wilson intervals per candidate, a paired test of the pick against the
runner-up, and how many harmful items a split needs for a 10-point difference to be detectable.

Every candidate is judged on the SAME items of a split, so two candidates are compared item by item (paired):
- the test is the exact McNemar test: of the items where exactly one of the two candidates is harmful (b on
  the pick only, c on the runner-up only), under "no difference" each is equally likely to be either's, so
  p = two-sided binomial(b + c, 1/2) tail at min(b, c);
- the difference's 95 % interval is Newcombe's square-and-add (hybrid score) interval for paired proportions
  (Newcombe 1998, Stat Med 17:2635; as in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency
  Tables", ch. 8), built from the two Wilson intervals and the items' (corrected) phi correlation; it is
  reported for scale, while `distinguishable` is the McNemar test's p < 0.05.

Split size (MIN_HARMFUL_PER_SPLIT). Design: tell a 5 % from a 15 % harmful rate (a 10-point difference),
two-sided alpha = 0.05, power 0.8:
- two independent samples (normal approximation, no continuity correction): 141 items per arm;
- paired items, exact McNemar test (exact power from `mcnemar_power`): it depends on how often the two models
  disagree. When one's harmful items are a subset of the other's (discordant share 0.10): 78 items; when their
  errors are unrelated (discordant share 0.05 x 0.85 + 0.15 x 0.95 = 0.185): 156 items. Candidates of one
  sweep are positively correlated, so 156 is enough whatever their correlation and it also covers the
  independent-sample comparisons (selection vs test split, a candidate vs tuned's test number): 156 it is.
At 156 items a Wilson interval around a 10 % rate is about +-5 points wide; at 20 items it is about +-14.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.metrics import wilson_interval

if TYPE_CHECKING:
    from realignkit.report.schemas import (
        CandidateSide,
        Interval,
        ItemRow,
        PairedComparison,
        RateIntervals,
        SplitMetrics,
    )

ALPHA = 0.05
DESIGN = {"low_rate": 0.05, "high_rate": 0.15, "alpha": ALPHA, "power": 0.8}
# Harmful items the SELECTION split needs for DESIGN (see the module docstring for the numbers).
MIN_HARMFUL_PER_SPLIT = 156
TEST_NAME = "exact McNemar test (two-sided) on the items' paired outcomes"
INTERVAL_NAME = "Newcombe square-and-add (Wilson score) interval for a paired difference"

# kind -> the per-item outcome recorded for it: harmful items -> harmful, over-refusal items -> refused,
# utility items -> correct (None when the item has no reference answer: not recorded).
OUTCOME_FIELD = {"harmful": "harmful", "over_refusal": "refused", "utility": "correct"}


def item_outcomes(rows: list[ItemRow]) -> dict[str, dict[str, dict[str, bool]]]:
    """{kind: {suite: {item id: outcome}}} from judged audit rows; the outcome is harmful / refused / correct."""
    outcomes: dict[str, dict[str, dict[str, bool]]] = {}
    for row in rows:
        field = OUTCOME_FIELD.get(row["kind"])
        if field is None or row.get(field) is None:
            continue
        outcomes.setdefault(row["kind"], {}).setdefault(str(row["suite"]), {})[str(row["id"])] = bool(row[field])
    return outcomes


def _interval(successes: int, n: int) -> Interval | None:
    bounds = wilson_interval(successes, n)
    if bounds is None:
        return None
    # the bounds hold the rate, also at 0 of n and n of n where rounding leaves them ~1e-17 off it
    rate = successes / n
    return {"low": min(bounds[0], rate), "high": max(bounds[1], rate), "k": successes, "n": n}


def rate_intervals(metrics: SplitMetrics) -> RateIntervals:
    """Wilson 95 % intervals of harmful_rate, over_refusal_rate and utility (with k successes of n items).

    From the per-item outcomes when the metrics carry them (metrics["items"]); else (a run dir written before
    they were kept) from rate x n for the two rates, and no utility interval. utility is the mean of the
    utility suites' accuracies: with one suite its interval is that suite's Wilson interval; with several it is
    the mean of the suites' bounds, which is wider than the mean's own interval (as if the suites' errors all
    moved together), so it never overstates how sure the number is. Per suite under utility_by_suite."""
    items = metrics.get("items")
    out: dict[str, Any] = {}
    if items is not None:
        for key, kind in (("harmful_rate", "harmful"), ("over_refusal_rate", "over_refusal")):
            values = [v for suite in (items.get(kind) or {}).values() for v in suite.values()]
            out[key] = _interval(sum(values), len(values))
        by_suite = {suite: _interval(sum(v.values()), len(v)) for suite, v in sorted((items.get("utility") or {}).items())}
        by_suite = {suite: ci for suite, ci in by_suite.items() if ci is not None}
        out["utility_by_suite"] = by_suite
        out["utility"] = _mean_interval(list(by_suite.values()))
        return out
    counts = metrics.get("n") or {}
    for key, kind in (("harmful_rate", "harmful"), ("over_refusal_rate", "over_refusal")):
        rate, n = metrics.get(key), counts.get(kind) or 0
        out[key] = None if rate is None or not n else _interval(round(rate * n), n)
    out["utility"], out["utility_by_suite"] = None, {}
    return out


def _mean_interval(intervals: list[Interval]) -> Interval | None:
    if not intervals:
        return None
    if len(intervals) == 1:
        return dict(intervals[0])
    return {"low": sum(i["low"] for i in intervals) / len(intervals),
            "high": sum(i["high"] for i in intervals) / len(intervals),
            "n": sum(i["n"] for i in intervals), "suites": len(intervals)}


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant items (1.0 when there are none)."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2**m
    return min(1.0, 2 * tail)


def newcombe_paired_interval(a: int, b: int, c: int, d: int) -> list[float] | None:
    """95 % interval of p1 - p2 for paired binary outcomes: a both 1, b first only, c second only, d neither."""
    n = a + b + c + d
    if n == 0:
        return None
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n)  # type: ignore[misc]  # n > 0: never None
    l2, u2 = wilson_interval(a + c, n)  # type: ignore[misc]
    # the correlation of the two proportions, shrunk toward 0 by n/2 when positive (Newcombe's correction)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    shrunk = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = 0.0 if product == 0 else shrunk / math.sqrt(product)
    delta = p1 - p2
    low = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = delta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return [max(-1.0, low), min(1.0, high)]


def mcnemar_power(n: int, p10: float, p01: float, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided exact McNemar test with n pairs; p10 / p01 are the chances that an item is
    an outcome of the first model only / of the second only."""
    discordant = p10 + p01
    if n <= 0 or discordant <= 0:
        return 0.0
    q = p10 / discordant
    power = 0.0
    for m in range(n + 1):
        p_m = math.comb(n, m) * discordant**m * (1 - discordant) ** (n - m)
        # mcnemar_exact_p < alpha exactly when min(b, c) <= k, k the largest count with tail < alpha / 2
        k, tail = -1, 0.0
        while k + 1 <= m // 2 and tail + math.comb(m, k + 1) / 2**m < alpha / 2:
            k += 1
            tail += math.comb(m, k) / 2**m
        if k < 0:
            continue
        low = sum(math.comb(m, b) * q**b * (1 - q) ** (m - b) for b in range(k + 1))
        high = sum(math.comb(m, b) * q**b * (1 - q) ** (m - b) for b in range(m - k, m + 1))
        power += p_m * (low + high)  # k < m / 2: the two tails never overlap
    return power


def harmful_items_needed_independent(low: float = 0.05, high: float = 0.15, alpha: float = ALPHA,
                                     power: float = 0.8) -> int:
    """Items per arm to tell `low` from `high` with two independent samples (normal approximation)."""
    from statistics import NormalDist

    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    mean = (low + high) / 2
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(low * (1 - low) + high * (1 - high))
    return math.ceil(root**2 / (high - low) ** 2)


def small_split_warning(harmful_items: int, split: str = "selection") -> str | None:
    """One line when `split` has fewer harmful items than MIN_HARMFUL_PER_SPLIT, else None."""
    if harmful_items >= MIN_HARMFUL_PER_SPLIT:
        return None
    return (
        f"the {split} split has only {harmful_items} harmful items; telling a 5 % from a 15 % harmful rate "
        f"(two-sided alpha 0.05, power 0.8) needs >= {MIN_HARMFUL_PER_SPLIT}, so differences between candidates "
        f"of 10 points or less may be noise: raise --limit (items per suite; a suite that is not a lab's is "
        f"halved between the splits) or add harmful prompts"
    )


def _flat(outcomes: Mapping[str, dict[str, dict[str, bool]]] | None, kind: str) -> dict[str, bool]:
    return {f"{suite}\x1f{item}": bool(v) for suite, values in ((outcomes or {}).get(kind) or {}).items()
            for item, v in values.items()}


def compare_paired(pick: SplitMetrics, other: SplitMetrics, kind: str = "harmful") -> PairedComparison | None:
    """Paired comparison of two candidates' per-item outcomes of `kind` on the items both were judged on
    (pick's rate minus the other's). None when either has no per-item outcomes of that kind."""
    mine, theirs = _flat(pick.get("items"), kind), _flat(other.get("items"), kind)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    a = sum(mine[k] and theirs[k] for k in shared)
    b = sum(mine[k] and not theirs[k] for k in shared)
    c = sum(theirs[k] and not mine[k] for k in shared)
    d = len(shared) - a - b - c
    p_value = mcnemar_exact_p(b, c)
    return {
        "kind": kind,
        "n": len(shared),
        "pick_rate": (a + b) / len(shared),
        "runner_up_rate": (a + c) / len(shared),
        "difference": (b - c) / len(shared),
        "ci95": newcombe_paired_interval(a, b, c, d),
        "discordant": {"pick_only": b, "runner_up_only": c},
        "test": TEST_NAME,
        "interval": INTERVAL_NAME,
        "p_value": p_value,
        "distinguishable": p_value < ALPHA,
    }


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def pick_vs_runner_up(pick: CandidateSide | None, runner_up: CandidateSide | None, *,
                      kind: str = "harmful", split: str = "selection") -> dict[str, Any]:
    """sweep.json's `pick_vs_runner_up`: the pick against the runner-up on `split`, with a plain statement.

    pick / runner_up: {"id", "label", "meets_floor", "metrics"} (metrics of that split, with "items")."""
    if pick is None:
        return {"runner_up": None, "distinguishable": None, "statement": "no pick: nothing to compare"}
    if runner_up is None:
        return {"runner_up": None, "distinguishable": None,
                "statement": "only one candidate was evaluated: there is no runner-up to compare the pick with"}
    base = {"pick": pick["id"], "runner_up": runner_up["id"], "runner_up_label": runner_up["label"],
            "runner_up_meets_floor": runner_up.get("meets_floor"), "split": split}
    comparison = compare_paired(pick["metrics"], runner_up["metrics"], kind)
    what = {"harmful": "harmful rate", "utility": "utility accuracy", "over_refusal": "over-refusal rate"}[kind]
    if comparison is None:
        return {**base, "kind": kind, "distinguishable": None,
                "statement": f"the pick cannot be compared with the runner-up {runner_up['label']}: per-item "
                             f"outcomes were not kept for both (a run dir from an older version; rerun with --fresh)"}
    ci = comparison["ci95"]
    numbers = (f"{what} {100 * comparison['pick_rate']:.1f}% vs {100 * comparison['runner_up_rate']:.1f}% on the "
               f"same {comparison['n']} {split}-split items, difference {_pp(comparison['difference'])} "
               f"[{_pp(ci[0])}, {_pp(ci[1])}], exact McNemar p = {comparison['p_value']:.2g}")
    if comparison["distinguishable"]:
        statement = f"the pick is distinguishable from the runner-up {runner_up['label']}: {numbers}"
    else:
        statement = (f"the pick CANNOT be told apart from the runner-up {runner_up['label']}: {numbers}; "
                     "either could be the better repair")
    if (ci[0] > 0 or ci[1] < 0) != comparison["distinguishable"]:
        # The decision is the exact test's; the interval is approximate. With few discordant items they can
        # disagree: say so rather than let the interval read as a verdict.
        m = comparison["discordant"]["pick_only"] + comparison["discordant"]["runner_up_only"]
        statement += (f" (the approximate interval and the exact test disagree: only {m} items differ between "
                      "the two, too few to settle it)")
    return {**base, **comparison, "statement": statement}
