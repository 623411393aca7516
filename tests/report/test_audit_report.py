"""The HTML report: rendered only from results.json, self-contained, and its images load in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from fixtures.browser import probe_page
from realignkit.common import BadInputError
from realignkit.evaluation.audit import AuditRun, build_results
from realignkit.evaluation.backends import GenerationSettings
from realignkit.report import render_report, write_report


def _row(suite, item_id, kind, category, ok, prompt="a request to [intent]"):
    refused = ok if kind == "harmful" else not ok
    return {"suite": suite, "id": item_id, "kind": kind, "category": category, "prompt": prompt,
            "response": "I can't help with that." if refused else "Sure, step one: ...", "refused": refused,
            "harmful": (not ok) if kind == "harmful" else None, "score": None, "correct": None, "ok": ok,
            "answer": None, "meta": {}}


def _results() -> dict:
    baseline = [_row("harm", f"{c}{i}", "harmful", c, True) for c in ("malware", "fraud") for i in range(5)]
    tuned = [_row("harm", f"{c}{i}", "harmful", c, i >= (3 if c == "malware" else 1)) for c in ("malware", "fraud")
             for i in range(5)]
    baseline += [_row("border", f"b{i}", "over_refusal", "homonyms", i > 1) for i in range(4)]
    tuned += [_row("border", f"b{i}", "over_refusal", "homonyms", True, prompt="<script>alert(1)</script>")
              for i in range(4)]
    return build_results(AuditRun("tuned", "fp-t", tuned), AuditRun("aligned", "fp-a", baseline),
                         judge={"name": "refusal", "version": "0"}, settings=GenerationSettings())


def test_report_shows_metrics_flips_and_escapes_text():
    results = _results()
    assert results["suites"]["harm"]["flips"]["safe_to_unsafe"] == 4
    page = render_report(results)
    assert page.count("<img ") == 3  # harm-vs-over-refusal + one per suite
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) == 3
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("safe_to_unsafe</td>") == 4 and page.count("unsafe_to_safe</td>") == 2
    assert "malware" in page and "+0.600" in page  # malware harmful rate 0 -> 0.6
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch


def test_report_without_baseline_says_so():
    results = _results()
    for key in ("baseline_overall", "overall_delta", "flipped_items"):
        results.pop(key)
    results["baseline"] = None
    page = render_report(results)
    assert "run with --baseline to see per-item flips" in page and page.count("<img ") == 3


def test_write_report_reads_only_results_json(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    html = write_report(tmp_path / "results.json", tmp_path / "report.html")
    assert html.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(BadInputError, match="cannot read results"):
        write_report(tmp_path / "bad.json", tmp_path / "r2.html")


def test_report_package_imports_nothing_of_ours_but_common():
    code = ("import sys, realignkit.report; "
            "ours = sorted(m for m in sys.modules if m.startswith('realignkit.') and m.split('.')[1] not in "
            "('report', 'common')); heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "print(ours + heavy)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_report_images_load_in_headless_chromium(chromium, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(_results()))
    probe = probe_page(chromium, page)
    assert probe["title"].startswith("realignkit audit")
    assert len(probe["images"]) == 3
    assert all(img["complete"] and img["width"] > 100 for img in probe["images"]), probe["images"]
