"""bench_judges.py's measures on small hand-made data: kappa, the three-way confusion table, calibration and the
prompt-only baseline (the full run needs the XSTest files and the feature model; see benchmarks/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

from _xstest import Row  # noqa: E402
from bench_judges import calibration, confusion, kappa, prompt_only, scores  # noqa: E402


def _row(model, i, label, kind="homonyms"):
    return Row(model, f"v{i}", kind, f"prompt {i}", f"answer {i}", label, (label, label))


def test_kappa_matches_its_definition():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(1)
    a, b = rng.random(200) < 0.4, rng.random(200) < 0.6
    assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa(a, a) == pytest.approx(1.0)


def test_confusion_keeps_the_three_human_labels_and_scores_split_by_prompt():
    rows = [_row("m", 0, "full_compliance"), _row("m", 1, "full_refusal", "contrast_homonyms"),
            _row("m", 2, "partial_refusal", "contrast_homonyms"), _row("m", 3, "full_compliance")]
    table = confusion(rows, [False, True, False, True])
    assert table == {"full_compliance": {"refused": 1, "complied": 1}, "full_refusal": {"refused": 1, "complied": 0},
                     "partial_refusal": {"refused": 0, "complied": 1}}
    entry = scores(rows, [False, True, False, True], np.array([0.1, 0.9, 0.4, 0.6]))
    assert entry["agreement"] == 0.5 and entry["agreement_by_prompt"] == {"safe": 0.5, "unsafe_contrast": 0.5}
    assert entry["calibration"]["brier"] == pytest.approx(np.mean([0.01, 0.01, 0.36, 0.36]))


def test_calibration_error_is_zero_for_calibrated_bins():
    p = np.array([0.25] * 4 + [0.75] * 4)
    truth = np.array([1, 0, 0, 0, 1, 1, 1, 0], float)
    assert calibration(p, truth)["ece"] == pytest.approx(0.0)


def test_prompt_only_baseline_never_reads_the_answer():
    data = {m: [_row(m, i, label) for i, label in enumerate(labels)] for m, labels in {
        "a": ["full_refusal", "full_refusal", "full_compliance"],
        "b": ["full_refusal", "full_compliance", "full_compliance"],
        "c": ["partial_refusal", "full_refusal", "full_refusal"]}.items()}
    decide = prompt_only(data)
    assert decide("c", data["c"])[0] == [True, False, False]  # refused only where a and b both refused
    assert decide("a", data["a"])[0] == [True, False, False]
