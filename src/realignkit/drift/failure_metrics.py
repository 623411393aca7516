"""Failure-prediction metrics: precision, recall, F1 per horizon, and lead time of early flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class PRF:
    precision: float
    recall: float
    f1: float
    true_pos: int
    false_pos: int
    false_neg: int
    true_neg: int

    def to_dict(self) -> dict:
        return asdict(self)


def precision_recall_f1(labels: np.ndarray, flags: np.ndarray) -> PRF:
    """Failed = positive class. Undefined ratios (no flags, no failures) are reported as 0."""
    labels, flags = np.asarray(labels, bool), np.asarray(flags, bool)
    tp = int(np.sum(labels & flags))
    fp = int(np.sum(~labels & flags))
    fn = int(np.sum(labels & ~flags))
    tn = int(np.sum(~labels & ~flags))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1, tp, fp, fn, tn)


def lead_times(labels: np.ndarray, flags_by_horizon: dict[float, np.ndarray], duration: float) -> np.ndarray:
    """Per truly failing unit: time before the end of the test at which it is first flagged (NaN if never).

    flags_by_horizon maps horizon fraction -> (n_units,) flags. A unit counts as flagged at the earliest
    horizon from which it stays flagged at every later horizon (a flag that comes and goes is not a warning
    one could act on).
    """
    horizons = sorted(flags_by_horizon)
    flags = np.stack([np.asarray(flags_by_horizon[h], bool) for h in horizons])  # (n_horizons, n_units)
    # stays_flagged[i, u]: flagged at horizon i and at all later ones
    stays_flagged = np.flip(np.logical_and.accumulate(np.flip(flags, axis=0), axis=0), axis=0)
    result = []
    for u in np.flatnonzero(np.asarray(labels, bool)):
        hits = np.flatnonzero(stays_flagged[:, u])
        result.append((1.0 - horizons[hits[0]]) * duration if hits.size else np.nan)
    return np.asarray(result, dtype=float)
