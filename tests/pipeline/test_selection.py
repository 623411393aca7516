"""Pure parts of the sweep: grids, no-op candidates, Pareto front, the pick rule, the split."""

import pytest

from realignkit.evaluation.suite_items import SuiteItem
from realignkit.pipeline.candidates import Candidate, plan_candidates
from realignkit.pipeline.evaluate import split_items
from realignkit.pipeline.pareto import Point, dominates, pareto_front, pick_winner, point_from_metrics


def test_grid_expansion_skips_references_and_equivalent_models():
    keep, skipped = plan_candidates(
        {
            "interpolate": {"alpha": [0.0, 0.5, 1.0, 0.5]},
            "task_arithmetic": {"scale": [0.5, 0.7]},
            "dare": {"density": [1.0, 0.3], "scale": [0.7]},
        }
    )
    labels = [c.label() for c in keep]
    assert labels == ["interpolate(alpha=0.5)", "task_arithmetic(scale=0.7)", "dare(density=0.3, scale=0.7)"]
    reasons = {s.candidate.label(): s.reason for s in skipped}
    assert reasons["interpolate(alpha=0)"] == "same model as the `aligned` reference"
    assert reasons["interpolate(alpha=1)"] == "same model as the `tuned` reference"
    assert reasons["task_arithmetic(scale=0.5)"] == "is the same model as interpolate(alpha=0.5)"
    # dare with density 1 keeps every entry: task_arithmetic(scale=0.7), already in the sweep.
    assert reasons["dare(density=1, scale=0.7)"] == "is the same model as task_arithmetic(scale=0.7)"
    assert len(skipped) == 5  # the repeated alpha=0.5 too


def test_candidate_ids_are_unique_and_path_safe():
    ids = {Candidate("ties", {"density": d, "scale": s, "weights": [1.0]}).id for d in (0.2, 0.5) for s in (0.5, 1)}
    assert len(ids) == 4
    assert all("/" not in i and " " not in i for i in ids)


def test_dominance_and_front():
    a = Point("a", 0.1, 0.9, 0.1)
    b = Point("b", 0.2, 0.8, 0.2)  # dominated by a
    c = Point("c", 0.05, 0.5, 0.1)  # safer but less useful: on the front
    d = Point("d", 0.1, 0.9, 0.05)  # same as a but less over-refusal: dominates a
    assert dominates(a, b) and not dominates(b, a)
    assert pareto_front([a, b, c, d]) == ["c", "d"]


def test_pick_lowest_harm_above_floor():
    points = [Point("safe-useless", 0.0, 0.5, 0.0), Point("ok", 0.1, 0.95, 0.1), Point("best", 0.05, 0.9, 0.2)]
    pick = pick_winner(points, 0.9)
    assert pick.id == "best" and pick.meets_floor
    assert "2 of 3" in pick.reason


def test_pick_when_nothing_meets_floor_reports_best_available():
    points = [Point("a", 0.0, 0.5, 0.0), Point("b", 0.3, 0.8, 0.0)]
    pick = pick_winner(points, 0.9)
    assert pick.id == "b" and not pick.meets_floor
    assert pick.reason.startswith("NO candidate keeps utility")


def test_retained_is_relative_to_tuned():
    point = point_from_metrics("x", {"harmful_rate": 0.2, "utility": 0.4, "over_refusal_rate": 0.1}, 0.8)
    assert point.utility_retained == pytest.approx(0.5)


def _item(i, kind, split=None):
    return SuiteItem(id=f"{kind}{i}", prompt=f"p{i}", kind=kind, meta={"split": split} if split else {})


def test_split_is_disjoint_balanced_and_honours_declared_splits():
    declared = [_item(98, "harmful", "select"), _item(99, "harmful", "test")]
    items = [_item(i, k) for k in ("harmful", "utility") for i in range(10)] + declared
    splits = split_items(items, seed=0)
    sel = {i.id for i in splits["selection"]}
    test = {i.id for i in splits["test"]}
    assert not sel & test and len(sel | test) == 22
    assert "harmful99" in test and "harmful98" in sel
    assert sum(i.kind == "utility" for i in splits["selection"]) == 5
    assert split_items(items, seed=0) == splits  # deterministic
    assert split_items(items, seed=1) != splits


def test_a_single_declared_split_is_not_trusted():
    # Only test-split files given: split them by hash rather than leave the selection split empty.
    items = [_item(i, "harmful", "test") for i in range(6)]
    splits = split_items(items)
    assert len(splits["selection"]) == len(splits["test"]) == 3


def test_disk_full_detection():
    import errno
    import sqlite3

    from realignkit.pipeline.rundir import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("no such table: x"))


def test_utility_retained_is_the_worst_suite_ratio():
    """A repair that gives back general skills but loses the fine-tune's own task must not pass the floor."""
    from realignkit.pipeline.pareto import utility_retained

    tuned = {"utility": 0.5, "utility_by_suite": {"new_skill": 1.0, "old_skill": 0.1}}
    reverted = {"utility": 0.5, "utility_by_suite": {"new_skill": 0.0, "old_skill": 1.0}}
    balanced = {"utility": 0.55, "utility_by_suite": {"new_skill": 0.95, "old_skill": 0.15}}
    assert utility_retained(reverted, tuned) == 0.0  # the macro average (0.5 vs 0.5) would have said 100 %
    assert utility_retained(balanced, tuned) == pytest.approx(0.95)
    points = [point_from_metrics("reverted", dict(reverted, harmful_rate=0.0), tuned),
              point_from_metrics("balanced", dict(balanced, harmful_rate=0.3), tuned)]
    assert pick_winner(points, 0.9).id == "balanced"
    # a suite where tuned scores 0 gives no ratio; with no per-suite numbers the overall utilities are compared
    assert utility_retained({"utility_by_suite": {"a": 0.4}}, {"utility_by_suite": {"a": 0.8, "b": 0.0}}) == 0.5
    assert utility_retained({"utility": 0.4}, 0.8) == 0.5
