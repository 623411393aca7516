"""The demo's index page, rendered only from the demo's summary.json dict: one summary table first (scenario ->
safety lost -> best repair -> safety and utility after, all on the TEST split), a chart, and links to every
audit and sweep report."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

INDEX_NAME = "index.html"
CHART_NAME = "summary.png"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * float(value):+.1f} pp"


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The summary table as text cells (shared by the HTML page and the terminal print)."""
    rows = []
    for s in summary["scenarios"]:
        repair = s.get("repair")
        test = (repair or {}).get("test") or {}
        if repair is None:
            best = "not needed" if not s["lost_safety"] else ("not swept here" if s.get("sweep_command")
                                                              else "no candidate")
        else:
            best = repair["label"] + ("" if repair["meets_floor"] else " (below utility floor)")
        rows.append([
            s["name"],
            f"{_pct(s['tuned']['harmful_rate'])} ({_pp(s['safety_lost'])})",
            best,
            _pct(test.get("harmful_rate")) if repair else "",
            f"{_pct(test.get('utility'))} ({_pct(test.get('utility_retained'))} of tuned's)" if repair else "",
            _pct(test.get("over_refusal_rate")) if repair else "",
        ])
    return rows


SUMMARY_HEADER = [
    "scenario",
    "harmful rate after fine-tune (safety lost vs aligned)",
    "best repair",
    "harmful rate after repair",
    "utility after repair (share of tuned's)",
    "over-refusal after repair",
]


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """Harmfulness rate per scenario (test split): aligned line, fine-tuned bar, repaired bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = summary["scenarios"]
    names = [s["name"] for s in scenarios]
    tuned = [s["tuned"]["harmful_rate"] or 0.0 for s in scenarios]
    repaired = [((s.get("repair") or {}).get("test") or {}).get("harmful_rate") for s in scenarios]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 4), dpi=110)
    xs = range(len(names))
    before = ax.bar([x - 0.2 for x in xs], tuned, width=0.4, color="indianred", label="fine-tuned")
    after = ax.bar([x + 0.2 for x in xs], [r or 0.0 for r in repaired], width=0.4, color="seagreen",
                   label="best repair")
    ax.bar_label(before, labels=[f"{100 * v:.0f}%" for v in tuned], fontsize=7)
    # A scenario that needed no repair gets no label: an empty bar there means "not swept", not "0 %".
    ax.bar_label(after, labels=["" if r is None else f"{100 * r:.0f}%" for r in repaired], fontsize=7)
    aligned = summary["aligned"]["metrics"].get("harmful_rate")
    if aligned is not None:
        ax.axhline(aligned, color="black", lw=1, ls="--", label="aligned")
    ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("harmfulness rate (test split)")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(h)}{' (test)' if i in (1, 3, 4, 5) else ''}</th>"
                   for i, h in enumerate(SUMMARY_HEADER))
    body = []
    for scenario, cells in zip(summary["scenarios"], summary_rows(summary), strict=True):
        links = [f"<a href='{html.escape(scenario['audit_report'])}'>audit</a>"]
        if scenario.get("sweep_report"):
            links.append(f"<a href='{html.escape(scenario['sweep_report'])}'>sweep</a>")
        cls = " class='lost'" if scenario["lost_safety"] else ""
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        body.append(f"<tr{cls}>{tds}<td>{' &middot; '.join(links)}</td></tr>")
    return f"<table><tr>{head}<th>reports</th></tr>{''.join(body)}</table>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px}
tr.lost td:nth-child(2){color:#b00020;font-weight:bold}img{max-width:100%}"""


def _caveats(summary: dict[str, Any]) -> str:
    """Per swept scenario: when its pick cannot be told apart from the runner-up, and its sweep's warnings."""
    items = []
    for s in summary["scenarios"]:
        repair = s.get("repair") or {}
        if repair.get("distinguishable_from_runner_up") is False and repair.get("vs_runner_up"):
            items.append(f"{s['name']}: {repair['vs_runner_up']}")
        items.extend(f"{s['name']}: {w}" for w in repair.get("warnings") or [])
    if not items:
        return ""
    return ("<h2>How sure the picks are</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items)
            + "</ul>")


def _unswept(summary: dict[str, Any]) -> str:
    """Scenarios that lost safety but were left out of the demo's sweeps, with the command that sweeps them."""
    items = [(s["name"], s["sweep_command"]) for s in summary["scenarios"] if s.get("sweep_command")]
    if not items:
        return ""
    return ("<h2>Lost safety, not swept by the demo (time budget): sweep them with</h2><ul>"
            + "".join(f"<li>{html.escape(n)}: <code>{html.escape(c)}</code></li>" for n, c in items) + "</ul>")


def render_demo_index(summary: dict[str, Any]) -> str:
    aligned = summary["aligned"]["metrics"]
    lab = summary["lab"]
    seconds = summary.get("seconds", {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>realignkit demo</title>"
        f"<style>{_STYLE}</style></head><body><h1>realignkit demo: audit, then repair</h1>"
        + _table(summary)
        + _caveats(summary)
        + _unswept(summary)
        + f"<p>All numbers are on the lab's TEST split, disjoint from the selection split the sweep picks on. "
        f"Safety lost = harmfulness-rate increase over aligned; scenarios above "
        f"{_pp(summary['safety_loss_threshold'])} are swept with: {html.escape(', '.join(summary['methods']))}; "
        f"the pick keeps utility &ge; {summary['utility_floor']:g} &times; tuned's on EVERY utility suite "
        "(the share shown is the worst suite's accuracy relative to tuned's, so reverting to aligned cannot pass "
        "by trading the fine-tune's new task for the old skills it lost); \"(below utility floor)\" marks the best "
        "available when no candidate keeps enough. Utility after repair is the mean over utility suites. "
        "Shares are ratios of small test-split counts and can swing widely when tuned scores near zero.</p>"
        f"<p>Aligned (test split): harmfulness {_pct(aligned.get('harmful_rate'))}, utility "
        f"{_pct(aligned.get('utility'))}, over-refusal {_pct(aligned.get('over_refusal_rate'))} "
        f"&middot; <a href='{html.escape(summary['aligned']['audit_report'])}'>aligned audit</a></p>"
        f"<img src='{CHART_NAME}' alt='harmfulness per scenario'>"
        f"<p>Lab: <code>{html.escape(str(lab['path']))}</code> (version {html.escape(str(lab['version']))}, "
        f"seed {lab['seed']}, profile {html.escape(str(lab['profile']))}, {'reused' if lab['reused'] else 'built'})."
        f" Time: {html.escape(', '.join(f'{k} {v}s' for k, v in seconds.items()))}.</p></body></html>\n"
    )


def write_demo_index(summary: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write index.html + summary.png into out_dir and return the HTML path (temp file + rename)."""
    out = Path(out_dir)
    plot_summary(summary, out / CHART_NAME)
    target = out / INDEX_NAME
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(render_demo_index(summary))
    os.replace(tmp, target)
    return target
