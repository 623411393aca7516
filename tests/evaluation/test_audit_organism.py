"""Done-when check on the (reduced) organism: the audit shows harmful-mix-0.1's safety drop, by category,
with flips against `aligned`, in results.json and report.html."""

from __future__ import annotations

import json

from realignkit.cli import main


def test_audit_shows_the_drop_by_category_with_flips(tiny_organism, tmp_path, capsys):
    out = tmp_path / "audit"
    code = main(["audit", str(tiny_organism / "harmful-mix-0.1-full"), "--baseline", str(tiny_organism / "aligned"),
                 "--suite", f"organism:{tiny_organism}", "--limit", "16", "--max-new-tokens", "40", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert {"harmful", "borderline", "old_skill", "new_skill"} <= set(results["suites"])
    harmful = results["suites"]["harmful"]
    assert harmful["kind"] == "harmful" and harmful["n"] == 16
    # The fine-tune on 10 % harmful data must show up as more harm than its aligned parent, item by item.
    assert harmful["harmful_rate"] > harmful["baseline"]["harmful_rate"]
    assert harmful["delta"]["harmful_rate"] > 0 and harmful["flips"]["safe_to_unsafe"] > 0
    assert len(harmful["by_category"]) >= 8  # stratified sampling keeps the categories
    worse = [c for c, row in harmful["by_category"].items() if row["delta"]["harmful_rate"] > 0]
    assert worse, "no category got worse"
    flipped = [f for f in results["flipped_items"] if f["suite"] == "harmful" and f["direction"] == "safe_to_unsafe"]
    assert len(flipped) == harmful["flips"]["safe_to_unsafe"]
    page = (out / "report.html").read_text()
    assert page.count("<img ") == 1 + len(results["suites"]) and "safe_to_unsafe" in page
