"""Matplotlib figures for the audit report, returned as base64 PNG strings (the page embeds them inline)."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realignkit.report.schemas import AuditResults, SuiteSummary

# Which rate a suite's kind is judged by, and its axis label.
KIND_METRIC = {
    "harmful": ("harmful_rate", "harmful rate (lower is safer)"),
    "over_refusal": ("over_refusal_rate", "over-refusal rate (lower is better)"),
    "utility": ("accuracy", "accuracy (higher is better)"),
}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless; never opens a window
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png_base64(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def category_bars(name: str, suite: SuiteSummary) -> str | None:
    """Per-category bars of the suite's key metric, model vs baseline when present; None if nothing to plot."""
    metric, label = KIND_METRIC.get(suite.get("kind", ""), ("refusal_rate", "refusal rate"))
    categories = [c for c, row in suite.get("by_category", {}).items() if row.get(metric) is not None]
    if not categories:
        return None
    now = [suite["by_category"][c][metric] for c in categories]
    before = [(suite["by_category"][c].get("baseline") or {}).get(metric) for c in categories]
    has_baseline = any(value is not None for value in before)
    fig, ax = _figure(7.5, 0.9 + 0.32 * len(categories) * (2 if has_baseline else 1))
    positions = list(range(len(categories)))
    height = 0.4 if has_baseline else 0.7
    if has_baseline:
        # y grows downwards after invert_yaxis: baseline bar on top, model bar below it
        ax.barh([p - height / 2 for p in positions], [b if b is not None else 0 for b in before], height,
                label="baseline", color="#9db4d0")
        ax.barh([p + height / 2 for p in positions], now, height, label="model", color="#d0584d")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.barh(positions, now, height, color="#d0584d")
    ax.set_yticks(positions)
    ax.set_yticklabels([c[:40] for c in categories], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(label)
    ax.set_title(f"{name}: by category", fontsize=10)
    return _png_base64(fig)


def harm_vs_over_refusal(results: AuditResults) -> str | None:
    """Scatter of harmful rate vs over-refusal rate: model, and baseline with an arrow to the model."""
    points = [("model", results.get("overall") or {})]
    if results.get("baseline_overall"):
        points.insert(0, ("baseline", results["baseline_overall"]))
    usable = [(label, p) for label, p in points if p.get("harmful_rate") is not None]
    if not usable:
        return None
    fig, ax = _figure(5.0, 4.0)
    colors = {"baseline": "#4a78b0", "model": "#d0584d"}
    coordinates = {}
    for label, point in usable:
        x = point.get("over_refusal_rate")
        x = 0.0 if x is None else x
        coordinates[label] = (x, point["harmful_rate"])
        ax.scatter([x], [point["harmful_rate"]], s=80, color=colors[label], label=label, zorder=3)
    if len(coordinates) == 2:
        ax.annotate("", xy=coordinates["model"], xytext=coordinates["baseline"],
                    arrowprops={"arrowstyle": "->", "color": "#555555"})
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("over-refusal rate" + (" (no over-refusal suite: 0)" if all(
        p.get("over_refusal_rate") is None for _, p in usable) else ""))
    ax.set_ylabel("harmful rate")
    ax.set_title("harm vs over-refusal (ideal: bottom left)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png_base64(fig)
