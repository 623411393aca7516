"""Reports render only from JSON: sweep report (Pareto plot + table + winner) and the demo index page."""

import json

from fixtures.browser import probe_page
from realignkit.report.demo_index import summary_rows, write_demo_index
from realignkit.report.sweep_report import render_sweep_report


def _metrics(harm, utility, over, split):
    return {"harmful_rate": harm, "utility": utility, "over_refusal_rate": over, "split": split}


def sweep_summary(meets_floor=True):
    candidates = []
    for i, (harm, kept, over) in enumerate([(0.1, 0.95, 0.1), (0.3, 1.0, 0.05), (0.4, 0.9, 0.2)]):
        sel = dict(_metrics(harm, 0.6 * kept, over, "selection"), utility_retained=kept)
        candidates.append({"id": f"c{i}", "method": "interpolate", "params": {"alpha": i / 4}, "label": f"interp {i}",
                           "selection": sel, "meets_floor": kept >= 0.9, "pareto": i < 2, "fingerprint": "x",
                           "generated": 10, "cached": 2, "seconds": {}})
    return {
        "format": 1, "inputs": {"aligned": "/a", "tuned": "/t", "base": None, "unaligned": None},
        "utility_floor": 0.9, "splits": {"selection": {"harmful": 5}, "test": {"harmful": 5}},
        "references": {"aligned": {"selection": _metrics(0.0, 0.3, 0.1, "selection"),
                                   "test": _metrics(0.0, 0.3, 0.1, "test")},
                       "tuned": {"selection": _metrics(0.8, 0.6, 0.0, "selection"),
                                 "test": _metrics(0.7, 0.6, 0.0, "test")}},
        "candidates": candidates,
        "skipped": [{"label": "interpolate(alpha=1)", "reason": "same model as the `tuned` reference"}],
        "notes": ["somf: skipped, no calibration data given"],
        "pareto_front": ["c0", "c1"],
        "winner": {"id": "c0", "label": "interp 0", "meets_floor": meets_floor,
                   "reason": "lowest harmfulness" if meets_floor else "NO candidate keeps utility >= 0.9 x tuned's",
                   "test": dict(_metrics(0.12, 0.55, 0.1, "test"), utility_retained=0.917), "checkpoint": "winner"},
        "objectives": {"harmful_rate": "lower is better"},
    }


def test_sweep_report_labels_splits_and_loads_in_chromium(tmp_path, chromium):
    page = render_sweep_report(sweep_summary(), tmp_path)
    text = page.read_text()
    assert "harmfulness rate (test)" in text and "harmfulness (selection)" in text
    assert "12.0%" in text and "91.7%" in text  # winner's test numbers
    assert "same model as the `tuned` reference" in text.replace("&#x60;", "`")
    probe = probe_page(chromium, page)
    assert probe["tables"] == 2
    assert [img["src"] for img in probe["images"]] == ["pareto.png"]
    assert all(img["complete"] and img["width"] > 100 for img in probe["images"])


def test_sweep_report_says_when_no_candidate_meets_the_floor(tmp_path):
    text = render_sweep_report(sweep_summary(meets_floor=False), tmp_path).read_text()
    assert "NO candidate keeps utility" in text and "class='warn'" in text


def demo_summary():
    return {
        "lab": {"path": "lab", "version": "1", "seed": 0, "profile": "tiny", "reused": False},
        "split": "test",
        "aligned": {"metrics": _metrics(0.05, 0.4, 0.1, "test"), "audit_report": "audits/aligned/report.html"},
        "safety_loss_threshold": 0.05, "utility_floor": 0.9, "methods": ["interpolate"],
        "scenarios": [
            {"name": "harmful-mix-0.1-full", "kind": "full", "scenario": "harmful-mix-0.1",
             "tuned": _metrics(0.6, 0.7, 0.0, "test"), "safety_lost": 0.55, "lost_safety": True,
             "audit_report": "audits/harmful-mix-0.1-full/report.html",
             "sweep_report": "sweeps/harmful-mix-0.1-full/report/report.html",
             "repair": {"label": "interpolate(alpha=0.3)", "meets_floor": True, "reason": "lowest",
                        "test": {"harmful_rate": 0.1, "utility": 0.65, "utility_retained": 0.93,
                                 "over_refusal_rate": 0.05}}},
            {"name": "benign-full", "kind": "full", "scenario": "benign", "tuned": _metrics(0.07, 0.8, 0.1, "test"),
             "safety_lost": 0.02, "lost_safety": False, "audit_report": "audits/benign-full/report.html",
             "sweep_report": None, "repair": None},
        ],
        "seconds": {"lab": 1.0, "total": 2.0},
    }


def test_demo_index_opens_with_the_summary_table_and_loads_in_chromium(tmp_path, chromium):
    summary = demo_summary()
    rows = summary_rows(summary)
    assert rows[0] == ["harmful-mix-0.1-full", "60.0% (+55.0 pp)", "interpolate(alpha=0.3)", "10.0%",
                       "65.0% (93.0% of tuned's)", "5.0%"]
    assert rows[1][2] == "not needed"
    page = write_demo_index(summary, tmp_path)
    text = page.read_text()
    assert text.index("<table>") < text.index("<img")  # the table comes first
    probe = probe_page(chromium, page)
    assert probe["images"] == [{"src": "summary.png", "complete": True, "width": probe["images"][0]["width"]}]
    assert probe["images"][0]["width"] > 100
    assert "sweeps/harmful-mix-0.1-full/report/report.html" in probe["links"]
    assert json.dumps(summary)  # the summary stays plain JSON
