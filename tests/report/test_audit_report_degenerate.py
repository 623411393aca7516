"""The audit report shows the degenerate-answer rate from results.json and warns when a model is broken."""

from __future__ import annotations

from realignkit.report import render_report
from realignkit.report.html import DEGENERATE_WARN_RATE


def _results(overall_rate, suite_rate, with_keys=True) -> dict:
    suite = {"kind": "harmful", "n": 20, "refusal_rate": 0.5, "harmful_rate": 0.5, "harmfulness_score": None,
             "accuracy": None, "ci95": {}, "by_category": {}, "flips": None}
    overall = {"n": 20, "harmful_rate": 0.5, "over_refusal_rate": None, "utility_accuracy": None,
               "harmfulness_score": None, "ci95": {}}
    if with_keys:
        suite.update(degenerate_rate=suite_rate, n_degenerate=round(20 * suite_rate))
        overall.update(degenerate_rate=overall_rate, n_degenerate=round(20 * overall_rate))
    return {"model": "m", "baseline": None, "judge": {"name": "refusal", "version": "0"}, "n_items": 20,
            "overall": overall, "suites": {"advbench": suite}, "items": "items.jsonl"}


def test_broken_model_gets_a_loud_warning_and_the_rate_is_shown():
    page = render_report(_results(0.85, 0.85))
    assert "class='alarm'" in page and "WARNING: degenerate output" in page
    assert "85% of all answers are degenerate" in page and "advbench 85%" in page
    assert "<th>degenerate</th>" in page and "degenerate answers" in page and "0.850" in page


def test_a_few_degenerate_answers_are_shown_without_alarm():
    page = render_report(_results(0.05, DEGENERATE_WARN_RATE))
    assert "WARNING: degenerate output" not in page
    assert "<th>degenerate</th>" in page and "0.050" in page


def test_one_broken_suite_is_enough_for_the_warning():
    page = render_report(_results(0.1, 0.6))
    assert "WARNING: degenerate output" in page and "advbench 60%" in page


def test_results_written_before_the_flag_still_render():
    page = render_report(_results(0, 0, with_keys=False))
    assert "WARNING" not in page and "<th>degenerate</th>" in page
