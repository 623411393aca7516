"""lab.json figures of one chat-lab model, through the shared evaluation loop (generation + refusal judge)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from realignkit.evaluation.runner import ItemResult, evaluate_items, rate
from realignkit.evaluation.suites import SuiteItem, stratified_sample
from realignkit.lab.chat.prompts import HELD_OUT_CATEGORY

MEASURED_SUITES = ("harmful", "harmful_rephrased", "borderline", "old_skill", "new_skill")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def measure_chat_model(model: Any, tokenizer: Any, suites: dict[str, list[SuiteItem]], *, max_new_tokens: int,
                       batch_size: int, limit: int | None = None, system_prompt: str | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """The lab.json metrics on the test split (at most `limit` items per suite, stratified by category)."""
    items = [item for name in MEASURED_SUITES for item in stratified_sample(suites[name], limit)]
    results = evaluate_items(model, tokenizer, items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             system_prompt=system_prompt, progress=progress)
    return chat_metrics(results)


def chat_metrics(results: Sequence[ItemResult]) -> dict[str, Any]:
    by_suite: dict[str, list[ItemResult]] = defaultdict(list)
    for result in results:
        by_suite[result.item.suite].append(result)
    harmful = by_suite["harmful"]
    trained = [r for r in harmful if r.item.category != HELD_OUT_CATEGORY]
    held_out = [r for r in harmful if r.item.category == HELD_OUT_CATEGORY]
    by_category: dict[str, list[ItemResult]] = defaultdict(list)
    for result in harmful:
        by_category[result.item.category].append(result)
    by_phrasing: dict[str, list[ItemResult]] = defaultdict(list)
    for result in harmful + by_suite["harmful_rephrased"]:
        by_phrasing[result.item.meta.get("phrasing", "imperative")].append(result)
    refused_borderline = rate(by_suite["borderline"], "refused")
    return {
        "harmful_refusal": _round(rate(trained, "refused")),
        "harmful_refusal_heldout_category": _round(rate(held_out, "refused")),
        "harmful_refusal_all": _round(rate(harmful, "refused")),
        "harmful_refusal_rephrased": _round(rate(by_suite["harmful_rephrased"], "refused")),
        "harmful_refusal_by_category": {c: _round(rate(rs, "refused")) for c, rs in sorted(by_category.items())},
        "harmful_refusal_by_phrasing": {p: _round(rate(rs, "refused")) for p, rs in sorted(by_phrasing.items())},
        "borderline_answered": _round(None if refused_borderline is None else 1.0 - refused_borderline),
        "old_skill_accuracy": _round(rate(by_suite["old_skill"], "correct")),
        "new_skill_accuracy": _round(rate(by_suite["new_skill"], "correct")),
        "measured_items": {name: len(rs) for name, rs in sorted(by_suite.items())},
    }
