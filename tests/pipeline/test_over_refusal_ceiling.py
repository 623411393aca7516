"""A candidate that refuses most benign-but-scary prompts is never picked, however low its harmful rate."""

from realignkit.pipeline.pareto import Point, pareto_front, pick_winner

# Measured on SmolLM2 (harmful-mix-0.1-lora, selection split): RESTA beta 2 cut harm to 17 % by refusing 86 % of
# XSTest's safe prompts; interpolate alpha 0.2 kept the task at 29 % harm and 7 % over-refusal.
REFUSES_EVERYTHING = Point("resta", harmful_rate=0.17, utility_retained=1.0, over_refusal_rate=0.86)
INTERPOLATE = Point("interp", harmful_rate=0.29, utility_retained=0.98, over_refusal_rate=0.07)


def test_over_refusal_above_the_ceiling_is_never_picked():
    assert pick_winner([REFUSES_EVERYTHING, INTERPOLATE], 0.9).id == "resta"  # no ceiling: lowest harm wins
    pick = pick_winner([REFUSES_EVERYTHING, INTERPOLATE], 0.9, max_over_refusal=0.15)
    assert pick.id == "interp" and pick.meets_floor
    assert "never picked, on the selection split: resta (over-refusal 0.86 > 0.15)" in pick.reason
    assert pareto_front([REFUSES_EVERYTHING, INTERPOLATE], max_over_refusal=0.15) == ["interp"]


def test_at_the_ceiling_is_allowed_and_no_eligible_candidate_means_no_pick():
    assert pick_winner([INTERPOLATE], 0.9, max_over_refusal=0.07).id == "interp"
    none = pick_winner([REFUSES_EVERYTHING], 0.9, max_over_refusal=0.15)
    assert none.id is None and none.reason.startswith("every candidate is excluded")
    assert Point("old", 0.1, 1.0, None).exclusion(max_over_refusal=0.1) is None  # not measured: not excluded
