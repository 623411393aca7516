"""Benchmark: fleets × detectors × horizons → precision / recall / F1 / lead time, on shared splits.

Every detector is trained on the same healthy training units, thresholded on the same held-out healthy units
with the same rule, and evaluated on the same test units with the same resampled features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from realignkit.common.errors import BadInputError
from realignkit.common.plugins import Registry
from realignkit.drift.cvae import PlainAutoencoder
from realignkit.drift.detectors import SklearnDetector, ThresholdConfig, quantile_threshold
from realignkit.drift.drift_model import DEFAULT_HORIZONS, DriftConfig, DriftModel, split_healthy
from realignkit.drift.failure_metrics import lead_times, precision_recall_f1
from realignkit.drift.table import Fleet

DETECTORS = ("cvae", "iforest", "ocsvm", "lof", "ae")  # table order: the CVAE, then BASELINES


@dataclass
class SplitScores:
    """Scores of the held-out healthy validation units and of the test units, per detector and horizon."""

    test: Fleet
    scores: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    val_scores: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    thresholds: dict[str, dict[float, float]] = field(default_factory=dict)
    flags: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)

    def apply_thresholds(self, rules: dict[str, ThresholdConfig]) -> None:
        """(Re)compute thresholds from the validation scores with one rule per detector, then the flags."""
        for name, by_horizon in self.val_scores.items():
            rule = rules[name]
            self.thresholds[name] = {h: quantile_threshold(v, rule) if np.isfinite(v).all() else np.inf
                                     for h, v in by_horizon.items()}
            self.flags[name] = {h: (self.scores[name][h] > t).astype(int) for h, t in self.thresholds[name].items()}


def concat_splits(parts: list[SplitScores]) -> SplitScores:
    """Join cross-fitted folds: each fold's test units were flagged with that fold's own thresholds."""
    units = [u for p in parts for u in p.test.units]
    first = parts[0].test
    joined = SplitScores(Fleet(units, first.value_cols, first.condition_cols, first.unit_col, first.time_col))
    for name in parts[0].flags:
        joined.scores[name] = {h: np.concatenate([p.scores[name][h] for p in parts]) for h in parts[0].flags[name]}
        joined.flags[name] = {h: np.concatenate([p.flags[name][h] for p in parts]) for h in parts[0].flags[name]}
    return joined


def healthy_units(fleet: Fleet) -> Fleet:
    return fleet.subset([u.unit for u in fleet.units if u.label == 0])


def score_split(
    train: Fleet,
    test: Fleet,
    *,
    config: DriftConfig,
    horizons: tuple[float, ...] = DEFAULT_HORIZONS,
    detectors: tuple[str, ...] = DETECTORS,
    rules: dict[str, ThresholdConfig] | None = None,
) -> SplitScores:
    """Fit every detector on the healthy units of `train`; score its held-out healthy units and `test`."""
    healthy = healthy_units(train)
    model = DriftModel(config.model_copy(update={"horizons": sorted(set(config.horizons) | set(horizons))}))
    model.fit(healthy)
    # the baselines reuse the CVAE's train / validation split and its fitted feature spec
    train_ids, val_ids = split_healthy(healthy.unit_ids, config.validation_fraction, config.seed)
    fit_part, val_part = healthy.subset(train_ids), healthy.subset(val_ids)
    reference = val_part if len(val_part) else fit_part  # same fallback as DriftModel.fit
    result = SplitScores(test)
    for name in detectors:
        result.scores[name], result.val_scores[name] = {}, {}
        for horizon in horizons:
            if name == "cvae":
                result.val_scores[name][horizon] = model.detector.decision_function(*model._features(reference, horizon))
                with warnings.catch_warnings():  # a bench scores unseen operating points on purpose
                    warnings.simplefilter("ignore", UserWarning)
                    result.scores[name][horizon] = model.decision_function(test, horizon)
            else:
                try:
                    detector = _fit_baseline(name, model, fit_part, horizon, config)
                except BadInputError:  # e.g. LOF with a single healthy training unit: this split is unscored
                    result.val_scores[name][horizon] = np.full(len(reference), np.nan)
                    result.scores[name][horizon] = np.full(len(test), np.nan)
                    continue
                result.val_scores[name][horizon] = detector.decision_function(*model.spec.features(reference, horizon))
                result.scores[name][horizon] = detector.decision_function(*model.spec.features(test, horizon))
    default_rule = config.cvae.threshold
    result.apply_thresholds({name: (rules or {}).get(name, default_rule) for name in detectors})
    return result


def _autoencoder(config: DriftConfig) -> PlainAutoencoder:
    return PlainAutoencoder(config.cvae.model_copy(update={"seed": config.seed}))


def _sklearn(kind: str) -> Callable[[DriftConfig], SklearnDetector]:
    return lambda config: SklearnDetector(kind, seed=config.seed, threshold=config.cvae.threshold)


# The baselines the CVAE is benchmarked against, by name (the CVAE itself is the DriftModel).
BASELINES: Registry[Callable[[DriftConfig], PlainAutoencoder | SklearnDetector]] = Registry("detector")
for _kind in ("iforest", "ocsvm", "lof"):
    BASELINES.add(_kind, _sklearn(_kind))
BASELINES.add("ae", _autoencoder)


def make_baseline(name: str, config: DriftConfig) -> PlainAutoencoder | SklearnDetector:
    return BASELINES.get(name)(config)


def _fit_baseline(name, model, fit_part, horizon, config):
    x, c = model.spec.features(fit_part, horizon)
    return make_baseline(name, config).fit(x, c)


def metric_rows(split: SplitScores, *, fleet: str, seed: int, duration: float) -> list[dict]:
    """One row per (detector, horizon): precision, recall, F1, AUROC, best-threshold F1, mean lead time."""
    labels = split.test.labels()
    rows = []
    for name, by_horizon in split.flags.items():
        leads = lead_times(labels, by_horizon, duration)
        for horizon, flags in sorted(by_horizon.items()):
            prf = precision_recall_f1(labels, flags)
            scores = split.scores[name][horizon]
            rows.append({
                "fleet": fleet, "seed": seed, "detector": name, "horizon": horizon,
                "n_units": len(labels), "n_failed": int(labels.sum()),
                **prf.to_dict(),
                "auroc": _auroc(labels, scores), "best_f1": _best_f1(labels, scores),
                "lead_time_mean": float(np.nanmean(leads)) if np.isfinite(leads).any() else float("nan"),
                "detected_early": int(np.isfinite(leads).sum()),
            })
    return rows


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-1e300, posinf=1e300)))


def _best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """F1 of the best threshold chosen on the test labels: a ranking-quality ceiling, not a usable result."""
    order = np.argsort(-np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-1e300, posinf=1e300))
    hits = np.cumsum(labels[order])
    k = np.arange(1, len(labels) + 1)
    positives = max(int(labels.sum()), 1)
    f1 = 2 * hits / (k + positives)
    return float(f1.max()) if len(f1) else float("nan")


def summarize(rows: list[dict], *, horizon: float) -> dict[str, dict[str, float]]:
    """Per (fleet, detector) at one horizon: mean, std, min of F1 over seeds."""
    summary: dict[str, dict[str, float]] = {}
    for fleet in sorted({r["fleet"] for r in rows}):
        for name in DETECTORS:
            f1s = [r["f1"] for r in rows if r["fleet"] == fleet and r["detector"] == name
                   and abs(r["horizon"] - horizon) < 1e-9]
            if f1s:
                summary[f"{fleet}/{name}"] = {"f1_mean": float(np.mean(f1s)), "f1_std": float(np.std(f1s)),
                                              "f1_min": float(np.min(f1s)), "n_seeds": len(f1s)}
    return summary
