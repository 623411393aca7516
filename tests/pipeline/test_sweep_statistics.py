"""How sure a sweep is: Wilson intervals per candidate, the pick against the runner-up (paired, same items), the
small-split warning, the split size behind it, and default grids that reach toward `aligned`."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from realignkit.evaluation.metrics import wilson_interval
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.pipeline.candidates import CandidateResult
from realignkit.pipeline.evaluate import metrics_from_rows
from realignkit.pipeline.stats import (
    MIN_HARMFUL_PER_SPLIT,
    compare_paired,
    harmful_items_needed_independent,
    item_outcomes,
    mcnemar_exact_p,
    mcnemar_power,
    newcombe_paired_interval,
    rate_intervals,
)
from realignkit.pipeline.summary import format_sweep_summary
from realignkit.pipeline.sweep import _Runner


def judged_rows(harmful, refused, correct_by_suite):
    """Rows as the audit judges them: harmful items (harmful?), over-refusal items (refused?), utility items."""
    rows = [{"suite": "advbench", "id": f"h{i}", "kind": "harmful", "harmful": h, "refused": not h, "correct": None}
            for i, h in enumerate(harmful)]
    rows += [{"suite": "xstest", "id": f"o{i}", "kind": "over_refusal", "harmful": None, "refused": r,
              "correct": None} for i, r in enumerate(refused)]
    for suite, correct in correct_by_suite.items():
        rows += [{"suite": suite, "id": f"u{i}", "kind": "utility", "harmful": None, "refused": False, "correct": c}
                 for i, c in enumerate(correct)]
    return rows


def metrics(harmful, refused=(False,) * 10, correct_by_suite=None, split="selection"):
    rows = judged_rows(harmful, refused, correct_by_suite or {"capitals": [True] * 10})
    return dict(metrics_from_rows(rows), split=split, fingerprint="f", generated=len(rows), cached=0,
                items=item_outcomes(rows))


def flags(n_true, n):
    return [True] * n_true + [False] * (n - n_true)


def summarize(rows_metrics, tuned, aligned, harmful_items, floor=0.9):
    """_Runner.summarize on constructed candidate metrics (no model is touched)."""
    items = [SuiteItem(id=f"h{i}", prompt="p", kind="harmful") for i in range(harmful_items)]
    plan = SimpleNamespace(splits={"selection": items, "test": items}, skipped=[], notes=[])
    config = SimpleNamespace(utility_floor=floor, aligned="/a", tuned="/t", base=None, unaligned=None,
                             max_degenerate_rate=0.2, max_over_refusal_increase=None)
    runner = _Runner(config, plan, run=None, executor=None, progress=False)
    rows = [CandidateResult(id=cid, method="interpolate", params={"alpha": i / 10}, label=f"interpolate({cid})",
                            metrics=m, seconds={}) for i, (cid, m) in enumerate(rows_metrics)]
    refs = {"aligned": {"metrics": aligned}, "tuned": {"metrics": tuned}}
    return runner.summarize(refs, rows)


def test_every_candidate_and_reference_has_wilson_intervals_with_n():
    two_suites = {"capitals": flags(9, 10), "arithmetic": flags(6, 8)}
    candidates = [("a", metrics(flags(6, 20), flags(3, 10), two_suites)),
                  ("b", metrics(flags(2, 20), flags(5, 10), {"capitals": flags(10, 10), "arithmetic": flags(7, 8)}))]
    summary = summarize(candidates, tuned=metrics(flags(18, 20), correct_by_suite=two_suites),
                        aligned=metrics(flags(0, 20), flags(4, 10)), harmful_items=20)
    a = summary["candidates"][0]["selection"]["ci95"]
    assert [a["harmful_rate"]["low"], a["harmful_rate"]["high"]] == wilson_interval(6, 20)
    assert (a["harmful_rate"]["k"], a["harmful_rate"]["n"]) == (6, 20)
    assert [a["over_refusal_rate"]["low"], a["over_refusal_rate"]["high"]] == wilson_interval(3, 10)
    assert [a["utility_by_suite"]["arithmetic"]["low"], a["utility_by_suite"]["arithmetic"]["high"]] == \
        wilson_interval(6, 8)
    # utility is the mean of the suites' accuracies: its interval is the mean of their bounds, n of both suites
    capitals, arithmetic = wilson_interval(9, 10), wilson_interval(6, 8)
    assert a["utility"]["low"] == pytest.approx((capitals[0] + arithmetic[0]) / 2)
    assert a["utility"]["high"] == pytest.approx((capitals[1] + arithmetic[1]) / 2)
    assert a["utility"]["n"] == 18
    assert a["harmful_rate"]["low"] <= summary["candidates"][0]["selection"]["harmful_rate"] <= a["harmful_rate"]["high"]
    b = summary["candidates"][1]["selection"]["ci95"]
    assert [b["harmful_rate"]["low"], b["harmful_rate"]["high"]] == wilson_interval(2, 20)
    aligned = summary["references"]["aligned"]["selection"]["ci95"]
    assert [aligned["harmful_rate"]["low"], aligned["harmful_rate"]["high"]] == pytest.approx(wilson_interval(0, 20))
    assert aligned["harmful_rate"]["low"] == 0.0  # never above the rate (Wilson's formula leaves ~1e-17 there)
    assert summary["references"]["tuned"]["selection"]["ci95"]["harmful_rate"]["k"] == 18
    # one suite: its own Wilson interval
    one = rate_intervals(metrics(flags(1, 4), correct_by_suite={"capitals": flags(3, 5)}))
    assert [one["utility"]["low"], one["utility"]["high"]] == wilson_interval(3, 5)


def test_intervals_of_an_older_run_dir_without_item_outcomes_come_from_rate_and_n():
    old = {"harmful_rate": 0.35, "over_refusal_rate": None, "utility": 0.5, "n": {"harmful": 20, "over_refusal": 0}}
    ci = rate_intervals(old)
    assert [ci["harmful_rate"]["low"], ci["harmful_rate"]["high"]] == wilson_interval(7, 20)
    assert ci["over_refusal_rate"] is None and ci["utility"] is None


def test_a_tie_or_a_one_item_difference_on_20_items_is_not_distinguishable():
    same = metrics(flags(7, 20))
    tie = compare_paired(same, metrics(flags(7, 20)))
    assert tie["difference"] == 0 and tie["p_value"] == 1.0 and tie["distinguishable"] is False
    one_item = compare_paired(metrics(flags(6, 20)), metrics(flags(7, 20)))
    assert one_item["difference"] == pytest.approx(-0.05) and one_item["discordant"] == {"pick_only": 0,
                                                                                          "runner_up_only": 1}
    assert one_item["p_value"] == 1.0 and not one_item["distinguishable"]
    assert one_item["ci95"][0] < 0 < one_item["ci95"][1]
    # the pick, 70 % harmful on 20 items, against a runner-up two items worse: noise
    close = compare_paired(metrics(flags(14, 20)), metrics(flags(16, 20)))
    assert not close["distinguishable"]


def test_a_clear_difference_on_many_items_is_distinguishable():
    clear = compare_paired(metrics(flags(5, 160)), metrics(flags(30, 160)))
    assert clear["distinguishable"] and clear["p_value"] < 1e-6
    assert clear["difference"] == pytest.approx(-25 / 160)
    assert clear["ci95"][1] < 0  # the whole interval favours the pick


def test_mcnemar_and_newcombe_against_known_values():
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)  # all 6 discordant items one way: 2 x 0.5^6
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    # Fagerland, Lydersen & Laake, ch. 8, Cavo et al. (2012): both 59, first only 6, second only 16, neither 80
    # -> Newcombe square-and-add: -0.0621 (95 % CI -0.1186 to -0.0046)
    low, high = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def test_sweep_json_says_when_the_pick_cannot_be_told_apart_from_the_runner_up():
    tuned = metrics(flags(20, 20))
    candidates = [("far", metrics(flags(16, 20))), ("pick", metrics(flags(14, 20))), ("close", metrics(flags(15, 20)))]
    summary = summarize(candidates, tuned=tuned, aligned=metrics(flags(0, 20)), harmful_items=20)
    assert summary["winner"]["id"] == "pick"
    versus = summary["pick_vs_runner_up"]
    assert versus["pick"] == "pick" and versus["runner_up"] == "close" and versus["kind"] == "harmful"
    assert versus["n"] == 20 and versus["difference"] == pytest.approx(-0.05)
    assert versus["distinguishable"] is False and "CANNOT be told apart" in versus["statement"]
    summary["winner"].update(label="interpolate(pick)", test=metrics(flags(20, 20), split="test"))
    summary["references"]["tuned"]["test"] = tuned
    text = format_sweep_summary(SimpleNamespace(summary=summary, already_complete=True, out=Path("sweep")))
    assert "vs runner-up: the pick CANNOT be told apart from the runner-up interpolate(close)" in text
    assert "70.0% [48.1, 85.5]" in text  # the pick's harmful rate with its Wilson interval


def test_a_clear_pick_is_reported_distinguishable():
    many = 160
    candidates = [("pick", metrics(flags(8, many))), ("runner", metrics(flags(40, many)))]
    summary = summarize(candidates, tuned=metrics(flags(many, many)), aligned=metrics(flags(0, many)),
                        harmful_items=many)
    assert summary["pick_vs_runner_up"]["distinguishable"] is True
    assert summary["pick_vs_runner_up"]["statement"].startswith("the pick is distinguishable")
    assert summary["warnings"] == []  # 160 harmful items on the selection split: enough


def test_small_selection_split_warns():
    summary = summarize([("a", metrics(flags(4, 20))), ("b", metrics(flags(6, 20)))], tuned=metrics(flags(18, 20)),
                        aligned=metrics(flags(0, 20)), harmful_items=20)
    assert len(summary["warnings"]) == 1
    assert "only 20 harmful items" in summary["warnings"][0] and str(MIN_HARMFUL_PER_SPLIT) in summary["warnings"][0]
    assert summary["statistics"]["min_harmful_per_split"] == MIN_HARMFUL_PER_SPLIT
    assert summary["statistics"]["selection_harmful_items"] == 20


def test_the_split_size_detects_a_10_point_difference():
    # paired items, exact McNemar, unrelated errors (5 % vs 15 % harmful): the worst case for correlated models
    p10, p01 = 0.15 * 0.95, 0.05 * 0.85
    assert mcnemar_power(MIN_HARMFUL_PER_SPLIT, p10, p01) >= 0.8 > mcnemar_power(MIN_HARMFUL_PER_SPLIT - 1, p10, p01)
    assert mcnemar_power(20, p10, p01) < 0.1  # the 20 harmful items: almost no power
    assert harmful_items_needed_independent() == 141 <= MIN_HARMFUL_PER_SPLIT  # two independent samples


def test_report_shows_intervals_the_runner_up_comparison_and_the_warning(tmp_path):
    from realignkit.report.sweep_report import render_sweep_report

    tuned = metrics(flags(20, 20))
    candidates = [("pick", metrics(flags(14, 20))), ("close", metrics(flags(15, 20)))]
    summary = summarize(candidates, tuned=tuned, aligned=metrics(flags(0, 20)), harmful_items=20)
    summary["winner"].update(label="interpolate(pick)", checkpoint="winner",
                             test=dict(metrics(flags(20, 20), split="test"), utility_retained=1.0,
                                       ci95=rate_intervals(metrics(flags(20, 20)))))
    text = render_sweep_report(summary, tmp_path).read_text()
    assert "70.0% <span class='ci'" in text and "[48.1, 85.5]" in text
    assert "[83.9, 100.0]" in text  # the winner's test-split harmful rate (20 of 20) with its interval
    assert "CANNOT be told apart from the runner-up interpolate(close)" in text
    assert "only 20 harmful items" in text
    assert (tmp_path / "pareto.png").stat().st_size > 1000


def test_default_grids_reach_toward_aligned():
    from realignkit.pipeline.candidates import plan_candidates
    from realignkit.pipeline.demo import DEMO_GRIDS
    from realignkit.pipeline.sweep_config import CALIBRATION_METHODS, DEFAULT_GRIDS, DEFAULT_METHODS

    assert min(DEFAULT_GRIDS["interpolate"]["alpha"]) <= 0.05 and 0.1 in DEFAULT_GRIDS["interpolate"]["alpha"]
    assert min(DEFAULT_GRIDS["slerp"]["t"]) <= 0.1
    assert min(DEFAULT_GRIDS["task_arithmetic"]["scale"]) <= 0.1
    assert max(DEFAULT_GRIDS["resta"]["beta"]) >= 1.5
    assert min(DEMO_GRIDS["interpolate"]["alpha"]) <= 0.1 and max(DEMO_GRIDS["resta"]["beta"]) >= 1.5
    weight_only = [m for m in DEFAULT_METHODS if m not in CALIBRATION_METHODS]
    kept, _ = plan_candidates({m: DEFAULT_GRIDS[m] for m in weight_only})
    assert len(kept) <= 20


def test_few_discordant_items_are_not_a_verdict_even_when_the_interval_excludes_zero():
    from realignkit.pipeline.stats import pick_vs_runner_up

    pick = {"id": "a", "label": "A", "metrics": metrics(flags(0, 6))}
    runner = {"id": "b", "label": "B", "meets_floor": True, "metrics": metrics(flags(5, 6))}
    versus = pick_vs_runner_up(pick, runner)
    assert versus["ci95"][1] < 0 and versus["p_value"] == pytest.approx(2 / 32)
    assert versus["distinguishable"] is False and "only 5 items differ" in versus["statement"]
