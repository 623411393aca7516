"""lab.json figures of one chat-lab model, through the audit's own machinery (cached generation + judge), so a
later `realignkit audit` or the demo's audits of the same weights and settings are served from the cache."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.suite_items import SuiteItem, stratified_sample
from realignkit.lab.chat.prompts import HELD_OUT_CATEGORY

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from realignkit.evaluation.backends import GenerationSettings
    from realignkit.report.schemas import ItemRow

MEASURED_SUITES = ("harmful", "harmful_rephrased", "borderline", "old_skill", "new_skill")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _rate(rows: list[ItemRow], field: str) -> float | None:
    values = [row[field] for row in rows if row.get(field) is not None]
    return sum(bool(v) for v in values) / len(values) if values else None


def measure_chat_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, fingerprint: str,
                       suites: dict[str, list[SuiteItem]], settings: GenerationSettings, *, limit: int | None = None,
                       cache_dir: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """The lab.json metrics on the test split (at most `limit` items per suite, stratified by category)."""
    from realignkit.evaluation.audit import Auditor
    from realignkit.evaluation.backends import TransformersBackend

    items = [item for name in MEASURED_SUITES for item in stratified_sample(suites[name], limit)]
    auditor = Auditor(items, settings=settings, cache_dir=cache_dir, progress=progress)
    backend = TransformersBackend(model, tokenizer, fingerprint=fingerprint, cache=auditor.generation_cache)
    return chat_metrics(auditor.run_backend(backend, name="lab").rows)


def chat_metrics(rows: list[ItemRow]) -> dict[str, Any]:
    """Figures from judged item rows (suite, category, meta, refused, correct)."""
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_suite[row["suite"]].append(row)
    harmful = by_suite["harmful"]
    trained = [r for r in harmful if r["category"] != HELD_OUT_CATEGORY]
    held_out = [r for r in harmful if r["category"] == HELD_OUT_CATEGORY]
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in harmful:
        by_category[row["category"]].append(row)
    by_phrasing: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in harmful + by_suite["harmful_rephrased"]:
        by_phrasing[(row.get("meta") or {}).get("phrasing", "imperative")].append(row)
    refused_borderline = _rate(by_suite["borderline"], "refused")
    return {
        "harmful_refusal": _round(_rate(trained, "refused")),
        "harmful_refusal_heldout_category": _round(_rate(held_out, "refused")),
        "harmful_refusal_all": _round(_rate(harmful, "refused")),
        "harmful_refusal_rephrased": _round(_rate(by_suite["harmful_rephrased"], "refused")),
        "harmful_refusal_by_category": {c: _round(_rate(rs, "refused")) for c, rs in sorted(by_category.items())},
        "harmful_refusal_by_phrasing": {p: _round(_rate(rs, "refused")) for p, rs in sorted(by_phrasing.items())},
        "borderline_answered": _round(None if refused_borderline is None else 1.0 - refused_borderline),
        "old_skill_accuracy": _round(_rate(by_suite["old_skill"], "correct")),
        "new_skill_accuracy": _round(_rate(by_suite["new_skill"], "correct")),
        "degenerate_rate": _round(_rate(rows, "degenerate")),
        "measured_items": {name: len(rs) for name, rs in sorted(by_suite.items())},
    }
