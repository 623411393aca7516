"""The sweep winner's model card gets the sweep's own before/after figures (test split: tuned vs the winner)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.methods.card import add_audit_to_card

if TYPE_CHECKING:
    from realignkit.report.schemas import SweepSummary

METRICS = {"harm (harmful rate)": "harmful_rate", "over-refusal rate": "over_refusal_rate", "utility": "utility"}


def winner_audit(summary: SweepSummary) -> dict[str, Any] | None:
    """Card audit block from sweep.json: before = tuned, after = the winner, aligned for reference (test split)."""
    winner = summary.get("winner") or {}
    references = summary.get("references") or {}
    tuned, aligned = (references.get(role, {}).get("test") for role in ("tuned", "aligned"))
    if not winner.get("test") or not tuned:
        return None
    sides = [tuned, winner["test"]] + ([aligned] if aligned else [])
    columns = ["before: tuned", f"after: this model ({winner.get('label') or winner.get('method')})"]
    columns += ["aligned (reference)"] if aligned else []
    sizes = ", ".join(f"{kind} {n}" for kind, n in (summary.get("splits") or {}).get("test", {}).items())
    return {"source": f"realignkit sweep, held-out test split ({sizes}); picked on the disjoint selection split",
            "columns": columns, "metrics": {label: [side.get(key) for side in sides] for label, key in METRICS.items()}}


def add_sweep_figures(winner_dir: Path, summary: SweepSummary) -> None:
    audit = winner_audit(summary)
    if audit is not None and (winner_dir / "realignkit.json").is_file():
        add_audit_to_card(winner_dir, audit)
