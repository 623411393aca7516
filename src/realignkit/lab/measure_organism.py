"""Measure an organism model through the shared evaluation package (no private evaluator)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.judged_items import ItemResult, evaluate_items, rate
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.lab.world import HELD_OUT_CATEGORY

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

MAX_NEW_TOKENS = 24  # every organism answer fits; refusals are decided by their opening anyway


def _run(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[SuiteItem], system_prompt: str | None) -> list[ItemResult]:
    return evaluate_items(
        model, tokenizer, items, max_new_tokens=MAX_NEW_TOKENS, batch_size=128, system_prompt=system_prompt
    )


def measure_model(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, suites: dict[str, list[SuiteItem]], system_prompt: str | None = None
) -> dict[str, Any]:
    """The lab.json metrics of one model on the test split."""
    everything = [item for name in ("harmful", "borderline", "old_skill", "new_skill") for item in suites[name]]
    results = _run(model, tokenizer, everything, system_prompt)
    by_suite: dict[str, list[ItemResult]] = defaultdict(list)
    for result in results:
        by_suite[result.item.suite].append(result)
    harmful = by_suite["harmful"]
    trained = [r for r in harmful if r.item.category != HELD_OUT_CATEGORY]
    held_out = [r for r in harmful if r.item.category == HELD_OUT_CATEGORY]
    by_category: dict[str, list[ItemResult]] = defaultdict(list)
    for result in harmful:
        by_category[result.item.category].append(result)
    refused_borderline = rate(by_suite["borderline"], "refused")
    return {
        "harmful_refusal": _round(rate(trained, "refused")),
        "harmful_refusal_heldout_category": _round(rate(held_out, "refused")),
        "harmful_refusal_by_category": {c: _round(rate(rs, "refused")) for c, rs in sorted(by_category.items())},
        "borderline_answered": _round(None if refused_borderline is None else 1.0 - refused_borderline),
        "old_skill_accuracy": _round(rate(by_suite["old_skill"], "correct")),
        "new_skill_accuracy": _round(rate(by_suite["new_skill"], "correct")),
    }


def trajectory_metrics(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, probe: dict[str, list[SuiteItem]], system_prompt: str | None = None
) -> dict[str, float]:
    """The three trajectory columns on a small probe set (held-out harmful from trained categories, skills)."""
    items = [*probe["harmful"], *probe["new_skill"], *probe["old_skill"]]
    results = _run(model, tokenizer, items, system_prompt)
    split_a = len(probe["harmful"])
    split_b = split_a + len(probe["new_skill"])
    return {
        "harmful_refusal": _round(rate(results[:split_a], "refused")),
        "new_skill_accuracy": _round(rate(results[split_a:split_b], "correct")),
        "old_skill_accuracy": _round(rate(results[split_b:], "correct")),
    }


def probe_set(suites: dict[str, list[SuiteItem]], harmful: int, skill: int) -> dict[str, list[SuiteItem]]:
    """Evenly spaced subset of the test split for cheap per-step evaluation."""
    trained = [i for i in suites["harmful"] if i.category != HELD_OUT_CATEGORY]
    return {
        "harmful": _spread(trained, harmful),
        "new_skill": _spread(suites["new_skill"], skill),
        "old_skill": _spread(suites["old_skill"], skill),
    }


def _spread(items: Sequence[SuiteItem], count: int) -> list[SuiteItem]:
    if count >= len(items):
        return list(items)
    stride = len(items) / count
    return [items[int(i * stride)] for i in range(count)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
