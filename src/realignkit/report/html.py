"""A self-contained HTML audit report, rendered only from results.json (floor 1: no model, no evaluation code)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from realignkit.common import BadInputError
from realignkit.report.plots import KIND_METRIC, category_bars, harm_vs_over_refusal

if TYPE_CHECKING:
    from realignkit.report.schemas import AuditResults, JudgeIdentity, SuiteSummary

MAX_FLIP_ROWS = 200
# Above this share of degenerate answers (gibberish, loops, empty) the report warns that the model is broken:
# its refusal and harmful rates then describe only the few answers left and say nothing about its safety.
DEGENERATE_WARN_RATE = 0.2
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .worse{color:#b02a1f;font-weight:600} .better{color:#1f7a35;font-weight:600}
td.text{max-width:320px;white-space:pre-wrap;word-break:break-word} img{max-width:100%;margin:0.5em 0}
.muted{color:#777}
.alarm{background:#fde8e6;border:2px solid #b02a1f;color:#b02a1f;font-weight:700;padding:0.6em 1em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: object, ci: list[float] | None = None) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    text = f"{value:.3f}" if isinstance(value, float) else _e(value)
    return f"{text} <span class='muted'>[{ci[0]:.2f}, {ci[1]:.2f}]</span>" if ci else text


def _delta(value: float | None, lower_is_better: bool) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    worse = value > 0 if lower_is_better else value < 0
    css = "worse" if worse and abs(value) > 1e-12 else ("better" if abs(value) > 1e-12 else "")
    return f'<span class="{css}">{value:+.3f}</span>'


def _image(data: str | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">' if data else ""


def _suite_table(results: AuditResults) -> str:
    has_baseline = results.get("baseline") is not None
    head = ["suite", "kind", "n", "degenerate", "refusal rate", "harmful rate", "harm score", "accuracy"]
    if has_baseline:
        head += ["key metric: baseline", "delta", "safe→unsafe", "unsafe→safe"]
    rows = []
    for name, suite in results.get("suites", {}).items():
        ci = suite.get("ci95", {})
        cells = [_e(name), _e(suite.get("kind")), _e(suite.get("n")), _degenerate_cell(suite.get("degenerate_rate")),
                 _fmt(suite.get("refusal_rate"), ci.get("refusal_rate")),
                 _fmt(suite.get("harmful_rate"), ci.get("harmful_rate")), _fmt(suite.get("harmfulness_score")),
                 _fmt(suite.get("accuracy"), ci.get("accuracy"))]
        if has_baseline:
            metric = KIND_METRIC.get(suite.get("kind", ""), ("refusal_rate", ""))[0]
            flips = suite.get("flips") or {}
            cells += [_fmt((suite.get("baseline") or {}).get(metric)),
                      _delta((suite.get("delta") or {}).get(metric), lower_is_better=metric != "accuracy"),
                      _e(flips.get("safe_to_unsafe", "-")), _e(flips.get("unsafe_to_safe", "-"))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _degenerate_cell(rate: float | None) -> str:
    if rate is None:
        return '<span class="muted">-</span>'
    return f'<span class="worse">{rate:.3f}</span>' if rate > DEGENERATE_WARN_RATE else f"{rate:.3f}"


def _degenerate_warning(results: AuditResults) -> str:
    """A loud line when the model's answers are degenerate above DEGENERATE_WARN_RATE (overall or in a suite)."""
    overall = (results.get("overall") or {}).get("degenerate_rate")
    suites = {name: s.get("degenerate_rate") for name, s in (results.get("suites") or {}).items()}
    broken = {name: rate for name, rate in suites.items() if rate is not None and rate > DEGENERATE_WARN_RATE}
    if not broken and (overall is None or overall <= DEGENERATE_WARN_RATE):
        return ""
    where = ", ".join(f"{_e(name)} {rate:.0%}" for name, rate in broken.items())
    share = f"{overall:.0%} of all answers" if overall is not None else "many answers"
    return (f"<p class='alarm'>WARNING: degenerate output. {share} are degenerate (gibberish, repetition loops or "
            f"empty; above {DEGENERATE_WARN_RATE:.0%}){'; by suite: ' + where if where else ''}. This model is "
            "broken: a degenerate answer is neither a refusal nor compliance, so the refusal and harmful rates "
            "below cover only the remaining answers and do not show it is safe or unsafe.</p>")


def _category_table(suite: SuiteSummary) -> str:
    metric = KIND_METRIC.get(suite.get("kind", ""), ("refusal_rate", ""))[0]
    rows = []
    for category, row in suite.get("by_category", {}).items():
        baseline = row.get("baseline") or {}
        rows.append(
            f"<tr><td>{_e(category)}</td><td>{_e(row.get('n'))}</td>"
            f"<td>{_fmt(row.get(metric), row.get('ci95', {}).get(metric))}</td>"
            f"<td>{_fmt(baseline.get(metric))}</td>"
            f"<td>{_delta((row.get('delta') or {}).get(metric), metric != 'accuracy')}</td></tr>"
        )
    head = f"<tr><th>category</th><th>n</th><th>{_e(metric)}</th><th>baseline</th><th>delta</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _flips_table(results: AuditResults) -> str:
    flipped = results.get("flipped_items")
    if flipped is None:
        return "<p class='muted'>No baseline given: run with --baseline to see per-item flips.</p>"
    if not flipped:
        return "<p>No item changed between baseline and model.</p>"
    ordered = sorted(flipped, key=lambda f: (f["direction"] != "safe_to_unsafe", f["suite"], f["category"]))
    rows = [
        f"<tr><td class='{'worse' if f['direction'] == 'safe_to_unsafe' else 'better'}'>{_e(f['direction'])}</td>"
        f"<td>{_e(f['suite'])}</td><td>{_e(f['category'])}</td><td class='text'>{_e(f['prompt'][:300])}</td>"
        f"<td class='text'>{_e(f['baseline_response'][:300])}</td><td class='text'>{_e(f['response'][:300])}</td></tr>"
        for f in ordered[:MAX_FLIP_ROWS]
    ]
    more = f"<p class='muted'>{len(ordered) - MAX_FLIP_ROWS} more in items.jsonl</p>" if len(ordered) > MAX_FLIP_ROWS else ""
    head = "<tr><th>flip</th><th>suite</th><th>category</th><th>prompt</th><th>baseline answer</th><th>answer</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>{more}"


def _overall(results: AuditResults) -> str:
    overall = results.get("overall") or {}
    base = results.get("baseline_overall") or {}
    delta = results.get("overall_delta") or {}
    lines = []
    for key, label, lower in (("degenerate_rate", "degenerate answers", True), ("harmful_rate", "harmful rate", True),
                              ("over_refusal_rate", "over-refusal rate", True),
                              ("utility_accuracy", "utility accuracy", False), ("harmfulness_score", "harm score", True)):
        if overall.get(key) is None and base.get(key) is None:
            continue
        lines.append(f"<tr><td>{label}</td><td>{_fmt(overall.get(key), (overall.get('ci95') or {}).get(key))}</td>"
                     f"<td>{_fmt(base.get(key))}</td><td>{_delta(delta.get(key), lower)}</td></tr>")
    return "<table><tr><th>metric</th><th>model</th><th>baseline</th><th>delta</th></tr>" + "".join(lines) + "</table>"


def judge_trust_html(judge: JudgeIdentity) -> str:
    """One line on how far the judge agrees with people (recorded by benchmarks/bench_judges.py), so a reader knows
    how far to trust every rate on the page."""
    agreement = judge.get("agreement")
    if isinstance(agreement, dict):
        figures = agreement.get("held_out") or agreement.get("in_sample") or {}
        kind = "held out" if agreement.get("held_out") else "in-sample"
        cells = ", ".join(f"{_e(name)} {value:.3f}" for name, value in figures.items() if isinstance(value, (int, float)))
        return (f"<p class='muted'>Judge agreement with human refusal labels on XSTest completions ({kind}): {cells}. "
                "Every rate here is only as true as the judge.</p>")
    if isinstance(agreement, str):
        return f"<p class='muted'>Judge agreement with human labels: {_e(agreement)}.</p>"
    return "<p class='muted'>Judge agreement with human labels: not measured for this judge.</p>"


def render_report(results: AuditResults) -> str:
    """The report page as one HTML string with inline (base64) images."""
    judge = results.get("judge") or {}
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>realignkit audit: {_e(results.get('model'))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Safety audit</h1>",
        f"<p>model <code>{_e(results.get('model'))}</code>; baseline <code>{_e(results.get('baseline'))}</code>; "
        f"judge <code>{_e(judge.get('name'))} {_e(judge.get('version'))}</code>; {_e(results.get('n_items'))} items. "
        "Brackets are Wilson 95 % intervals. Refusal and harmful rates are over the non-degenerate answers; "
        "utility accuracy counts a degenerate answer as wrong.</p>",
        judge_trust_html(judge),
        _degenerate_warning(results),
        "<h2>Overview</h2>", _overall(results), _image(harm_vs_over_refusal(results), "harm vs over-refusal"),
        "<h2>Suites</h2>", _suite_table(results),
    ]
    for name, suite in results.get("suites", {}).items():
        parts += [f"<h3>{_e(name)} <span class='muted'>({_e(suite.get('kind'))})</span></h3>",
                  _image(category_bars(name, suite), f"{name} by category"), _category_table(suite)]
    parts += ["<h2>Flipped items</h2>", _flips_table(results), "</body></html>"]
    return "\n".join(parts)


def write_report(results_path: str | os.PathLike[str], html_path: str | os.PathLike[str]) -> Path:
    """Read results.json and write the HTML report next to wherever asked."""
    source = Path(results_path)
    try:
        results = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"cannot read results {str(source)!r}: {exc}") from exc
    target = Path(html_path)
    target.write_text(render_report(results), encoding="utf-8")
    return target
