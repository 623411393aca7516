"""Anomaly detectors with a PyOD-style API: fit on healthy units, `decision_function` (higher = more anomalous),
`predict` (1 = flagged) and `threshold_`.

`ConditionalVAE` is the method of Abdelli et al., "Degradation prediction of semiconductor lasers using
conditional variational autoencoder" (arXiv:2211.02847, 2022): a CVAE trained only on healthy devices,
conditioned on the operating point; its anomaly score flags degrading devices before the test ends.
The baselines (IsolationForest, one-class SVM, LOF, plain autoencoder) see the same features.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from realignkit.common.errors import BadInputError


class ThresholdConfig(BaseModel):
    """How the flag threshold is set from held-out healthy scores (training scores when none are held out).

    - "quantile": q + margin · (q − median), q = the `quantile` of the scores. The margin extends the healthy
      tail in the scores' own units (affine-invariant: it means the same for every detector).
    - "mad": median + mad_k · 1.4826 · MAD, a robust z-score cut: one or two extreme held-out units barely move
      it, whereas they set q99 outright when only ~100 units are held out.
    """

    model_config = ConfigDict(extra="forbid")

    rule: Literal["quantile", "mad"] = "mad"  # the CVAE's best rule on the tuning seeds (bench_drift.py tune)
    quantile: float = Field(0.99, gt=0.0, le=1.0)
    margin: float = Field(2.0, ge=0.0)
    mad_k: float = Field(10.0, gt=0.0)


class Detector(Protocol):
    threshold_: float

    def fit(self, x: np.ndarray, c: np.ndarray, x_val: np.ndarray | None = None,
            c_val: np.ndarray | None = None) -> Detector: ...

    def decision_function(self, x: np.ndarray, c: np.ndarray) -> np.ndarray: ...

    def predict(self, x: np.ndarray, c: np.ndarray) -> np.ndarray: ...


def quantile_threshold(scores: np.ndarray, config: ThresholdConfig) -> float:
    """The score above which a unit is flagged."""
    if scores.size == 0:
        raise BadInputError("no healthy scores to set a threshold from (the healthy set is empty)")
    median = float(np.median(scores))
    if config.rule == "mad":
        mad = float(np.median(np.abs(scores - median))) * 1.4826
        return median + config.mad_k * max(mad, 1e-12)
    q = float(np.quantile(scores, config.quantile))
    return q + config.margin * (q - median)


class _ThresholdMixin:
    threshold_: float
    threshold_config: ThresholdConfig

    def _set_threshold(self, x, c, x_val, c_val) -> None:
        use_val = x_val is not None and len(x_val) > 0
        scores = self.decision_function(x_val, c_val) if use_val else self.decision_function(x, c)
        self.threshold_ = quantile_threshold(scores, self.threshold_config)

    def predict(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (self.decision_function(x, c) > self.threshold_).astype(int)


def _require_rows(x: np.ndarray) -> None:
    if len(x) == 0:
        raise BadInputError("no healthy units to train on (the healthy set is empty)")


class SklearnDetector(_ThresholdMixin):
    """IsolationForest / OCSVM / LOF on [features, standardized conditions]; score = −score_samples."""

    def __init__(self, kind: str, *, seed: int = 0, threshold: ThresholdConfig | None = None) -> None:
        self.kind = kind
        self.seed = seed
        self.threshold_config = threshold or ThresholdConfig()

    def _make(self, n_rows: int):
        from sklearn.ensemble import IsolationForest
        from sklearn.neighbors import LocalOutlierFactor
        from sklearn.svm import OneClassSVM

        if self.kind == "iforest":
            return IsolationForest(n_estimators=200, random_state=self.seed)
        if self.kind == "ocsvm":
            return OneClassSVM(nu=0.05, gamma="scale")
        if self.kind == "lof":
            if n_rows < 2:
                raise BadInputError("LOF needs at least 2 healthy training rows")
            return LocalOutlierFactor(n_neighbors=min(20, n_rows - 1), novelty=True)
        raise BadInputError(f"unknown baseline {self.kind!r}")

    def fit(self, x, c, x_val=None, c_val=None) -> SklearnDetector:
        _require_rows(x)
        self.estimator_ = self._make(len(x)).fit(np.hstack([x, c]))
        self._set_threshold(x, c, x_val, c_val)
        return self

    def decision_function(self, x, c) -> np.ndarray:
        return -self.estimator_.score_samples(np.hstack([x, c]))
