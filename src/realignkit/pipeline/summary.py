"""Plain-text summaries for the terminal (the HTML lives in realignkit.report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realignkit.pipeline.sweep import SweepOutcome


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pct_ci(block: dict[str, Any] | None, key: str) -> str:
    """`30.0% [15.0, 50.0]`: a rate with its Wilson 95 % interval (in %) when the block carries one."""
    block = block or {}
    ci = (block.get("ci95") or {}).get(key)
    text = pct(block.get(key))
    return text if not ci or block.get(key) is None else f"{text} [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"


def format_sweep_summary(outcome: SweepOutcome) -> str:
    """Candidates (selection split) and the winner (test split), for `realignkit sweep`'s stdout."""
    summary = outcome.summary
    rows = []
    for c in summary["candidates"]:
        sel = c["selection"]
        star = "*" if c["id"] == summary["winner"].get("id") else ("p" if c["pareto"] else "")
        rows.append([star, c["label"], pct_ci(sel, "harmful_rate"), pct(sel.get("utility_retained")),
                     pct_ci(sel, "over_refusal_rate")])
    lines = [text_table(["", "candidate", "harm (sel) [95% CI]", "utility kept (sel)", "over-refusal (sel) [95% CI]"],
                        rows),
             "(* winner, p Pareto front; sel = selection split; [95% CI] = Wilson interval, in %)"]
    winner = summary["winner"]
    if winner.get("id") is not None:
        test = winner.get("test") or {}
        tuned = summary["references"]["tuned"].get("test") or {}
        lines.append(
            f"winner: {winner['label']} -- test split: harmfulness {pct_ci(test, 'harmful_rate')} "
            f"(tuned {pct_ci(tuned, 'harmful_rate')}), utility kept {pct(test.get('utility_retained'))}, "
            f"over-refusal {pct_ci(test, 'over_refusal_rate')}"
        )
        lines.append(f"why: {winner['reason']}")
        versus = summary.get("pick_vs_runner_up") or {}
        if versus.get("statement"):
            lines.append(f"vs runner-up: {versus['statement']}")
    state = "already complete, nothing re-run" if outcome.already_complete else (
        f"{outcome.evaluated} evaluated, {outcome.resumed} resumed from an earlier run")
    lines.append(f"sweep: {state}; report: {outcome.out / 'report' / 'report.html'}")
    return "\n".join(lines)


def format_demo_summary(summary: dict[str, Any], out: Any) -> str:
    """The demo's summary table (test split) and where index.html is."""
    from realignkit.report.demo_index import summary_rows

    aligned = summary["aligned"]["metrics"]
    # Short forms of report.demo_index.SUMMARY_HEADER, to fit a terminal.
    header = ["scenario", "harmful after FT (lost)", "best repair", "harmful after", "utility after (of tuned's)",
              "over-refusal"]
    lines = [
        f"aligned (test split): harmful {pct(aligned.get('harmful_rate'))}, utility {pct(aligned.get('utility'))}, "
        f"over-refusal {pct(aligned.get('over_refusal_rate'))}",
        text_table(header, summary_rows(summary)),
        "(all numbers on the TEST split; repairs were picked on the disjoint selection split)",
    ]
    lines += [f"{s['name']} lost safety and was not swept here (time budget); from {out}: {s['sweep_command']}"
              for s in summary["scenarios"] if s.get("sweep_command")]
    lines.append(f"demo: {out / 'index.html'}")
    return "\n".join(lines)
