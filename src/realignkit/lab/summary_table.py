"""A plain-text table of lab.json (printed by `lab build`, quoted in notes)."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("model", 24),
    ("harmful_refusal", 8),
    ("harmful_refusal_heldout_category", 8),
    ("borderline_answered", 8),
    ("old_skill_accuracy", 8),
    ("new_skill_accuracy", 8),
    ("train_seconds", 8),
)
HEADERS = ("model", "refusal", "ref.heldout", "border.ans", "old acc", "new acc", "train s")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown table: one row per model of lab.json."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for name, record in summary["models"].items():
        cells = [name] + [_cell(record.get(key)) for key, _ in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
