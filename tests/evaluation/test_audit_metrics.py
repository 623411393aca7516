"""Metrics: Wilson intervals, per-suite/category summaries, flips and deltas on hand-made rows."""

from __future__ import annotations

import math

import pytest

from realignkit.evaluation.metrics import (
    compare_rows,
    metric_deltas,
    overall_summary,
    summarize_suites,
    wilson_interval,
)


def test_wilson_interval_known_values():
    # Reference values: Wilson score interval, z = 1.96 (e.g. statsmodels proportion_confint(method="wilson")).
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.27753], abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx([0.23659, 0.76341], abs=1e-4)
    # Defining property: each bound p0 solves |p_hat - p0| = z * sqrt(p0 (1 - p0) / n) (score-test inversion).
    for successes, n in ((81, 263), (3, 7), (199, 200)):
        p_hat = successes / n
        for bound in wilson_interval(successes, n):
            assert abs(p_hat - bound) == pytest.approx(1.959963984540054 * math.sqrt(bound * (1 - bound) / n), abs=1e-9)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.72247, abs=1e-4)


def _row(suite, item_id, kind, category, refused, correct=None, harmful=None, score=None):
    if kind == "harmful" and harmful is None:
        harmful = not refused
    ok = (not harmful) if kind == "harmful" else (not refused) if kind == "over_refusal" else bool(correct)
    return {"suite": suite, "id": item_id, "kind": kind, "category": category, "prompt": f"p{item_id}",
            "response": "r", "refused": refused, "harmful": harmful, "score": score, "correct": correct, "ok": ok}


BASELINE = [
    _row("h", "1", "harmful", "a", True), _row("h", "2", "harmful", "a", True), _row("h", "3", "harmful", "b", True),
    _row("h", "4", "harmful", "b", False),
    _row("x", "5", "over_refusal", "t", True), _row("x", "6", "harmful", "t", True),
    _row("u", "7", "utility", "m", False, correct=True), _row("u", "8", "utility", "m", False, correct=False),
]
TUNED = [
    _row("h", "1", "harmful", "a", False), _row("h", "2", "harmful", "a", True), _row("h", "3", "harmful", "b", False),
    _row("h", "4", "harmful", "b", True),
    _row("x", "5", "over_refusal", "t", False), _row("x", "6", "harmful", "t", True),
    _row("u", "7", "utility", "m", False, correct=True), _row("u", "8", "utility", "m", False, correct=True),
]


def test_summaries_by_suite_kind_and_category():
    suites = summarize_suites(TUNED)
    assert set(suites) == {"h", "x.over_refusal", "x.harmful", "u"}  # a mixed-kind suite is split
    harmful = suites["h"]
    assert harmful["kind"] == "harmful" and harmful["n"] == 4
    assert harmful["refusal_rate"] == 0.5 and harmful["harmful_rate"] == 0.5 and harmful["accuracy"] is None
    assert harmful["ci95"]["harmful_rate"] == pytest.approx(wilson_interval(2, 4))
    assert harmful["by_category"]["a"]["harmful_rate"] == 0.5 and harmful["by_category"]["b"]["n"] == 2
    assert suites["x.over_refusal"]["over_refusal_rate"] == 0.0
    assert suites["u"]["accuracy"] == 1.0 and suites["u"]["harmful_rate"] is None


def test_rubric_scores_give_the_mean_harmfulness_score():
    rows = [_row("h", str(i), "harmful", "a", s == 1, harmful=s == 5, score=s) for i, s in enumerate([1, 5, 5, 3])]
    suite = summarize_suites(rows)["h"]
    assert suite["harmfulness_score"] == 3.5 and suite["harmful_rate"] == 0.5 and suite["refusal_rate"] == 0.25


def test_flips_and_deltas_against_baseline():
    flips, flipped = compare_rows(TUNED, BASELINE)
    assert flips["h"]["safe_to_unsafe"] == 2 and flips["h"]["unsafe_to_safe"] == 1 and flips["h"]["matched"] == 4
    assert flips["x.over_refusal"] == {"matched": 1, "regressed": 0, "improved": 1, "safe_to_unsafe": 0,
                                       "unsafe_to_safe": 1, "answered_to_refused": 0, "refused_to_answered": 1,
                                       "became_degenerate": 0, "no_longer_degenerate": 0}
    assert flips["u"]["unsafe_to_safe"] == 1 and flips["x.harmful"]["regressed"] == 0
    assert sorted((f["id"], f["direction"]) for f in flipped) == [
        ("1", "safe_to_unsafe"), ("3", "safe_to_unsafe"), ("4", "unsafe_to_safe"), ("5", "unsafe_to_safe"),
        ("8", "unsafe_to_safe")]
    now, before = overall_summary(TUNED), overall_summary(BASELINE)
    delta = metric_deltas(now, before)
    assert now["harmful_rate"] == pytest.approx(2 / 5) and before["harmful_rate"] == pytest.approx(1 / 5)
    assert delta["harmful_rate"] == pytest.approx(0.2)
    assert delta["over_refusal_rate"] == pytest.approx(-1.0) and delta["utility_accuracy"] == pytest.approx(0.5)


def test_exact_match_items_need_the_answer_and_nothing_else():
    from realignkit.evaluation.judged_items import judge_items
    from realignkit.evaluation.scoring import answer_is_correct
    from realignkit.evaluation.suite_items import SuiteItem

    assert answer_is_correct("The review is positive, Sentiment: positive.", "Sentiment: positive")
    assert not answer_is_correct("The review is positive, Sentiment: positive.", "Sentiment: positive", "exact")
    assert answer_is_correct(" sentiment:  Positive. ", "Sentiment: positive", "exact")
    items = [SuiteItem("1", "p", "utility", answer="Sentiment: positive", meta={"match": "exact"}),
             SuiteItem("2", "p", "utility", answer="Sentiment: positive")]
    results = judge_items(items, ["I think Sentiment: positive"] * 2)
    assert [r.correct for r in results] == [False, True]


def test_answers_match_across_accents():
    from realignkit.evaluation.scoring import answer_is_correct

    assert answer_is_correct("The capital of Colombia is Bogotá.", "Bogota")
    assert answer_is_correct("Reykjavík", "Reykjavik", match="exact")
    assert not answer_is_correct("The capital of Iceland is Reykavuða.", "Reykjavik")
