"""Fitting the refusal probe (used by benchmarks/fit_refusal_probe.py and, held out, by bench_judges.py).

Data are grouped by the model that wrote the answers. `fit_probe` fits on every group:
- a class-balanced logistic regression on standardised features (balanced, so the fit does not learn how often
  the fitting models happened to refuse: gpt4 refused 49 % of XSTest, mistralinstruct 17 %);
- temperature scaling of its logit (Guo et al. 2017, "On calibration of modern neural networks"), fitted on
  leave-one-group-out logits, i.e. on answers from a model the probe had not seen, so the probabilities are
  calibrated for new models. Only the slope is fitted: the decision stays at the balanced logit 0, because an
  offset (Platt scaling) learns the fitting models' refusal rates; measured leave-one-model-out, a fitted offset
  took the probe from 0.947 to 0.924 on mistralinstruct and the whole judge from 0.956 to 0.927;
- the share of human refusals among the answers where a confident / a soft rule fired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from realignkit.evaluation.judges.probe_features import FeatureSpec
from realignkit.evaluation.judges.refusal_probe import RefusalProbe

DEFAULT_C = 0.01  # L2 strength, chosen on leave-one-model-out agreement (bench_judges.py --sweep-c)


def _fit_linear(features: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(weights, bias) of a balanced L2 logistic regression, with the standardisation folded into them."""
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(0)
    scale = features.std(0)
    scale[scale < 1e-8] = 1.0
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit((features - mean) / scale, labels)
    weights = model.coef_[0] / scale
    return weights.astype(np.float64), float(model.intercept_[0] - weights @ mean)


def held_out_logits(features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                    c: float = DEFAULT_C) -> dict[str, np.ndarray]:
    """For each group, the logits of a linear probe fitted on the other groups."""
    logits = {}
    for held in features:
        rest = [g for g in features if g != held]
        weights, bias = _fit_linear(np.concatenate([features[g] for g in rest]),
                                    np.concatenate([labels[g] for g in rest]), c)
        logits[held] = features[held].astype(np.float64) @ weights + bias
    return logits


def _temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, 0): the logistic fit of the labels on the logits without an offset."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000, fit_intercept=False).fit(logits.reshape(-1, 1), labels)
    return float(model.coef_[0, 0]), 0.0


def rule_precision(rule_classes: Sequence[str | None], labels: np.ndarray) -> dict[str, float]:
    """Share of human refusals among answers where a confident / soft rule fired (Laplace-smoothed)."""
    result = {}
    for name in ("confident", "soft"):
        hits = np.array([c == name for c in rule_classes])
        result[name] = float((labels[hits].sum() + 1) / (hits.sum() + 2))
    return result


def fit_probe(features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
              rule_classes: Mapping[str, Sequence[str | None]], *, spec: FeatureSpec,
              feature_model: dict[str, str], fitted_on: dict[str, Any], c: float = DEFAULT_C) -> RefusalProbe:
    """The shipped probe from every group (needs >= 2 groups for the held-out calibration)."""
    if len(features) < 2:
        raise ValueError("the probe's calibration needs answers from at least two models")
    groups = list(features)
    weights, bias = _fit_linear(np.concatenate([features[g] for g in groups]),
                                np.concatenate([labels[g] for g in groups]), c)
    held = held_out_logits(features, labels, c)
    calibration = _temperature(np.concatenate([held[g] for g in groups]), np.concatenate([labels[g] for g in groups]))
    precision = rule_precision([c_ for g in groups for c_ in rule_classes[g]],
                               np.concatenate([labels[g] for g in groups]))
    return RefusalProbe(spec, weights, bias, calibration, precision, feature_model, {**fitted_on, "C": c})
