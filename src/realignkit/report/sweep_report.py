"""The sweep report: rendered only from a sweep.json dict (no models). Writes report.html and pareto.png.

Every number carries the split it was measured on: candidates are compared on the SELECTION split, and the
winner's final numbers come from the disjoint TEST split.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realignkit.report.schemas import JudgeIdentity, SweepSummary

PLOT_NAME = "pareto.png"
REPORT_NAME = "report.html"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _metric(block: dict[str, Any] | None, key: str) -> Any:
    return None if not block else block.get(key)


def _ci(block: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    return ((block or {}).get("ci95") or {}).get(key)


def _pct_ci(block: dict[str, Any] | None, key: str) -> str:
    """`30.0% [15.0, 50.0]`: the rate and its Wilson 95 % interval in %, with n on hover (sweep.json ci95)."""
    value, ci = _metric(block, key), _ci(block, key)
    if value is None or not ci:
        return _pct(value)
    return (f"{_pct(value)} <span class='ci' title='Wilson 95 % interval over {ci['n']} items'>"
            f"[{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]</span>")


def _judge_line(judge: JudgeIdentity) -> str:
    """Which judge decided refused/harmful (and so the pick), and how far it agrees with people."""
    if not judge:
        return ""
    from realignkit.report.html import judge_trust_html

    return (f"<p>Judge: <code>{_esc(judge.get('name'))} {_esc(judge.get('version'))}</code> decided every "
            "refusal and harm verdict, and so the pick.</p>" + judge_trust_html(judge))


def plot_pareto(summary: SweepSummary, path: Path) -> None:
    """Harmfulness (x, lower better) vs utility (y, higher better), both on the selection split; colour =
    over-refusal; the dotted line is the floor (floor x tuned's utility)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in summary["candidates"] if c["selection"].get("harmful_rate") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    xs = [c["selection"]["harmful_rate"] for c in rows]
    ys = [c["selection"].get("utility_retained") or 0.0 for c in rows]
    # Horizontal bars: the Wilson 95 % interval of each harmfulness rate (sweep.json ci95), when recorded.
    cis = [_ci(c["selection"], "harmful_rate") for c in rows]
    if any(cis):
        # clamped at 0: at 0 of n (or n of n) the bound equals the rate only up to rounding
        errors = [[max(0.0, x - ci["low"]) if ci else 0.0 for x, ci in zip(xs, cis, strict=True)],
                  [max(0.0, ci["high"] - x) if ci else 0.0 for x, ci in zip(xs, cis, strict=True)]]
        ax.errorbar(xs, ys, xerr=errors, fmt="none", ecolor="#999999", elinewidth=0.8, capsize=2, zorder=1,
                    label="95 % interval (harmfulness)")
    over = [c["selection"].get("over_refusal_rate") or 0.0 for c in rows]
    scatter = ax.scatter(xs, ys, c=over, cmap="viridis_r", vmin=0, vmax=max(over + [0.01]), s=40, zorder=3,
                         edgecolors=["black" if c["pareto"] else "none" for c in rows], label="candidates")
    fig.colorbar(scatter, ax=ax, label="over-refusal rate (selection)")
    front = sorted((c for c in rows if c["pareto"]), key=lambda c: c["selection"]["harmful_rate"])
    if front:
        ax.plot([c["selection"]["harmful_rate"] for c in front],
                [c["selection"].get("utility_retained") or 0.0 for c in front],
                color="black", lw=1, ls="--", zorder=2, label="Pareto front")
    _plot_references(ax, summary)
    winner = next((c for c in rows if c["id"] == summary["winner"].get("id")), None)
    if winner is not None:
        ax.scatter([winner["selection"]["harmful_rate"]], [winner["selection"].get("utility_retained") or 0.0],
                   marker="*", s=260, color="crimson", zorder=4, label="winner")
    ax.axhline(summary["utility_floor"], color="grey", lw=0.8, ls=":",
               label=f"utility floor ({summary['utility_floor']:g} x tuned, worst suite)")
    ax.set_xlabel("harmfulness rate (selection split, lower is better)")
    ax.set_ylabel("utility retained vs tuned, worst suite (selection)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_title("Repair candidates")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_references(ax: Any, summary: SweepSummary) -> None:
    for role, marker in (("aligned", "s"), ("tuned", "X")):
        block = summary["references"][role].get("selection") or {}
        if block.get("harmful_rate") is None:
            continue
        utility = block.get("utility_retained") or 0.0
        ax.scatter([block["harmful_rate"]], [utility], marker=marker, s=70, color="grey", zorder=3, label=role)
        ax.annotate(role, (block["harmful_rate"], utility), textcoords="offset points", xytext=(5, 5), fontsize=8)


def _esc(value: object) -> str:
    return html.escape(str(value))


def _winner_section(summary: SweepSummary) -> str:
    winner = summary["winner"]
    if winner.get("id") is None:
        return f"<p class='warn'>No winner: {_esc(winner.get('reason', ''))}</p>"
    cls = "ok" if winner["meets_floor"] else "warn"
    refs = summary["references"]
    rows = []
    for name, block in (("winner: " + winner["label"], winner.get("test")), ("aligned", refs["aligned"].get("test")),
                        ("tuned", refs["tuned"].get("test"))):
        rows.append(
            f"<tr><td>{_esc(name)}</td><td>{_pct_ci(block, 'harmful_rate')}</td>"
            f"<td>{_pct_ci(block, 'utility')}</td><td>{_pct_ci(block, 'over_refusal_rate')}</td></tr>"
        )
    checkpoint = winner.get("checkpoint")
    return (
        f"<h2>Winner</h2><p class='{cls}'><b>{_esc(winner['label'])}</b> &mdash; {_esc(winner['reason'])}.</p>"
        + _versus(summary)
        + f"<p>Checkpoint: <code>../{_esc(checkpoint)}/</code> (relative to this report).</p>"
        "<h3>Test split (disjoint from the selection split; these are the numbers to quote)</h3>"
        "<table><tr><th>model</th><th>harmfulness rate (test) [95 % CI]</th><th>utility (test) [95 % CI]</th>"
        "<th>over-refusal rate (test) [95 % CI]</th></tr>" + "".join(rows) + "</table>"
        f"<p>Utility retained vs tuned (test): {_pct(_metric(winner.get('test'), 'utility_retained'))}</p>"
    )


def _versus(summary: SweepSummary) -> str:
    """The paired test of the pick against the runner-up, in words (sweep.json pick_vs_runner_up)."""
    versus = summary.get("pick_vs_runner_up") or {}
    if not versus.get("statement"):
        return ""
    cls = "ok" if versus.get("distinguishable") else "warn"
    return f"<p class='{cls}'><b>Pick vs runner-up (selection split):</b> {_esc(versus['statement'])}.</p>"


def _warnings(summary: SweepSummary) -> str:
    return "".join(f"<p class='warn'><b>Warning:</b> {_esc(w)}.</p>" for w in summary.get("warnings") or [])


def _candidate_table(summary: SweepSummary) -> str:
    head = (
        "<tr><th>candidate</th><th>harmfulness (selection) [95 % CI]</th><th>utility (selection) [95 % CI]</th>"
        "<th>utility retained (selection)</th><th>over-refusal (selection) [95 % CI]</th><th>meets floor</th>"
        "<th>Pareto</th><th>generated / cached</th></tr>"
    )
    rows = []
    for role in ("aligned", "tuned"):
        block = summary["references"][role].get("selection") or {}
        rows.append(
            f"<tr class='ref'><td>{role} (reference)</td><td>{_pct_ci(block, 'harmful_rate')}</td>"
            f"<td>{_pct_ci(block, 'utility')}</td><td></td><td>{_pct_ci(block, 'over_refusal_rate')}</td>"
            "<td></td><td></td><td></td></tr>"
        )
    for c in summary["candidates"]:
        sel = c["selection"]
        mark = " class='win'" if c["id"] == summary["winner"].get("id") else ""
        rows.append(
            f"<tr{mark}><td>{_esc(c['label'])}</td><td>{_pct_ci(sel, 'harmful_rate')}</td>"
            f"<td>{_pct_ci(sel, 'utility')}</td><td>{_pct(sel.get('utility_retained'))}</td>"
            f"<td>{_pct_ci(sel, 'over_refusal_rate')}</td><td>{'yes' if c['meets_floor'] else 'no'}</td>"
            f"<td>{'yes' if c['pareto'] else ''}</td><td>{c['generated']} / {c['cached']}</td></tr>"
        )
    n = (summary.get("splits", {}).get("selection") or {}).get("harmful")
    caption = (
        "<p>[95 % CI]: Wilson score interval, in %, over the split's items of that kind"
        + (f" ({n} harmful items on the selection split)" if n else "")
        + "; utility over several suites: the mean of the suites' bounds (wider than the mean's own interval). "
        "Candidates whose intervals overlap widely may not differ at all.</p>"
    )
    return "<h2>All candidates</h2><table>" + head + "".join(rows) + "</table>" + caption


def _notes(summary: SweepSummary) -> str:
    parts = []
    if summary.get("skipped"):
        items = "".join(f"<li>{_esc(s['label'])}: {_esc(s['reason'])}</li>" for s in summary["skipped"])
        parts.append(f"<h2>Skipped (they add nothing) or failed candidates</h2><ul>{items}</ul>")
    if summary.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in summary["notes"]) + "</ul>")
    sizes = ", ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) for name, counts in summary["splits"].items()
    )
    parts.append(f"<h2>Splits</h2><p>Items per split and kind &mdash; {_esc(sizes)}.</p>")
    objectives = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in summary["objectives"].items())
    parts.append(f"<h2>Objectives</h2><ul>{objectives}</ul>")
    return "".join(parts)


_STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.win{background:#fde7ea;font-weight:bold}tr.ref{color:#666}
.ok{background:#e8f6ec;padding:.6em}.warn{background:#fff4d6;padding:.6em}img{max-width:100%}
.ci{color:#666;font-size:12px;white-space:nowrap}"""


def render_sweep_report(summary: SweepSummary, out_dir: str | os.PathLike[str]) -> Path:
    """Write report.html + pareto.png into out_dir (created) and return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_pareto(summary, out / PLOT_NAME)
    inputs = ", ".join(f"{k}: {_esc(v)}" for k, v in summary["inputs"].items() if v)
    body = (
        f"<h1>Repair sweep</h1><p>{inputs}</p>"
        f"<p>Utility floor: {summary['utility_floor']:g} &times; tuned's utility (selection split).</p>"
        + _judge_line(summary.get("judge") or {})
        + _warnings(summary)
        + _winner_section(summary)
        + f"<h2>Pareto front (selection split)</h2><img src='{PLOT_NAME}' alt='Pareto plot of repair candidates'>"
        + _candidate_table(summary)
        + _notes(summary)
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>realignkit sweep</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    (out / REPORT_NAME).write_text(page)
    return out / REPORT_NAME
