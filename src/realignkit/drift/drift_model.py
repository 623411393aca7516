"""DriftModel: a fleet-level degradation predictor around the ConditionalVAE.

Trained once on healthy units at many horizons (the horizon is one more condition of the CVAE), so a unit can
be scored from any prefix of its test. The flag threshold at each training horizon comes from held-out healthy
units and is interpolated in between.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from realignkit.common.errors import BadInputError
from realignkit.drift.cvae import ConditionalVAE, CVAEConfig
from realignkit.drift.features import (
    FeatureSpec,
    describe_seen_conditions,
    durations_differ,
    unseen_condition_units,
)
from realignkit.drift.table import Fleet

MODEL_CONFIG_NAME = "drift_model.json"
DEFAULT_HORIZONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # fractions of a unit's life; the bench uses them too


class DriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_points: int = Field(16, ge=2)
    horizons: list[float] = Field(default_factory=lambda: list(DEFAULT_HORIZONS))
    validation_fraction: float = Field(0.25, ge=0.0, lt=1.0)  # healthy units held out to set thresholds
    # None: each unit's own last reading ends its test when the healthy units' test durations differ, else one
    # fleet-wide duration (the longest test); True / False force one rule. The rule used is saved with the model.
    per_unit_duration: bool | None = None
    # "asinh": features are asinh(value / noise σ), for multiplicative wear-out (see features.py)
    value_transform: Literal["none", "asinh"] = "none"
    seed: int = 0
    cvae: CVAEConfig = CVAEConfig()


@dataclass
class UnitScore:
    unit: str
    score: float
    flag: int


def split_healthy(unit_ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) unit ids; validation gets round(fraction·n) units but leaves ≥ 1 for training."""
    rng = np.random.default_rng(seed)
    order = [unit_ids[i] for i in rng.permutation(len(unit_ids))]
    n_val = min(int(round(fraction * len(order))), len(order) - 1) if fraction > 0 else 0
    return order[n_val:], order[:n_val]


class DriftModel:
    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()
        self.spec: FeatureSpec | None = None
        self.detector: ConditionalVAE | None = None
        self.thresholds: dict[float, float] = {}
        self.seen_conditions: list[dict] = []
        self.value_cols: list[str] = []
        self.condition_cols: list[str] = []
        self.columns: dict[str, str] = {}  # unit / time column names of the training table, defaults for scoring
        # the test-duration rule fit() used: {"rule": "per_unit" | "fleet", "chosen_by": "auto" | "config", ...}
        self.duration: dict = {}

    # --- training --------------------------------------------------------------------------------------------
    def fit(self, healthy: Fleet) -> DriftModel:
        """Fit on healthy units only; a share of them is held out to set per-horizon thresholds."""
        if len(healthy) == 0:
            raise BadInputError("the healthy set is empty: no unit is labelled healthy, nothing to train on")
        cfg = self.config
        train_ids, val_ids = split_healthy(healthy.unit_ids, cfg.validation_fraction, cfg.seed)
        train, val = healthy.subset(train_ids), healthy.subset(val_ids)
        per_unit = durations_differ(healthy) if cfg.per_unit_duration is None else cfg.per_unit_duration
        self.spec = FeatureSpec.fit(train, n_points=cfg.n_points, per_unit_duration=per_unit,
                                    value_transform=cfg.value_transform)
        ends = [u.end_time for u in healthy.units]
        self.duration = {"rule": "per_unit" if per_unit else "fleet",
                         "chosen_by": "auto" if cfg.per_unit_duration is None else "config",
                         "healthy_end_times": [min(ends), max(ends)]}
        self.value_cols, self.condition_cols = list(healthy.value_cols), list(healthy.condition_cols)
        self.seen_conditions = describe_seen_conditions(healthy)
        # a unit whose first reading comes after a horizon has no prefix there (e.g. a short test read every
        # 100 h, at horizon 0.1 of its own duration): it sits out that horizon
        parts = [self._features(part, h) for h in cfg.horizons if len(part := self._with_prefix(train, h))]
        if not parts:
            raise BadInputError("no healthy training unit has a reading before any training horizon")
        x, c = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        self.detector = ConditionalVAE(cfg.cvae.model_copy(update={"seed": cfg.seed})).fit(x, c)
        reference = val if len(val) else train  # with no held-out units, thresholds come from training scores
        self.thresholds = {}
        for horizon in cfg.horizons:
            ref = self._with_prefix(reference, horizon)
            if len(ref) == 0:  # no threshold at this horizon: it lies outside the range the model scores
                continue
            scores = self.detector.decision_function(*self._features(ref, horizon))
            self.thresholds[horizon] = _quantile_threshold(scores, self.detector)
        if not self.thresholds:
            raise BadInputError("no held-out healthy unit has a reading before any training horizon")
        self.detector.threshold_ = self.threshold_at(max(self.thresholds))
        return self

    def _with_prefix(self, fleet: Fleet, horizon: float) -> Fleet:
        return fleet.subset([u.unit for u in fleet.units if self.spec.has_reading_before(u, horizon)])

    def _features(self, fleet: Fleet, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        x, c = self.spec.features(fleet, horizon)
        horizon_col = np.full((len(x), 1), horizon, dtype=np.float32)
        return x, np.hstack([c, horizon_col])  # horizon is one more condition of the CVAE

    # --- scoring ---------------------------------------------------------------------------------------------
    def threshold_at(self, horizon: float) -> float:
        keys = sorted(self.thresholds)
        return float(np.interp(horizon, keys, [self.thresholds[k] for k in keys]))

    def decision_function(self, fleet: Fleet, horizon: float) -> np.ndarray:
        self._check_compatible(fleet, horizon)
        return self.detector.decision_function(*self._features(fleet, horizon))

    def score(self, fleet: Fleet, horizon: float) -> list[UnitScore]:
        scores = self.decision_function(fleet, horizon)
        threshold = self.threshold_at(horizon)
        return [UnitScore(u, float(s), int(s > threshold)) for u, s in zip(fleet.unit_ids, scores, strict=True)]

    def _check_compatible(self, fleet: Fleet, horizon: float) -> None:
        if self.detector is None:
            raise RuntimeError("fit() or load() the model first")
        if len(fleet.value_cols) != len(self.value_cols):
            raise BadInputError(
                f"data has {len(fleet.value_cols)} value column(s), the model was trained on {len(self.value_cols)} "
                f"({', '.join(self.value_cols)})"
            )
        if len(fleet.condition_cols) != len(self.condition_cols):
            raise BadInputError(
                f"data has {len(fleet.condition_cols)} condition column(s), the model was trained on "
                f"{len(self.condition_cols)} ({', '.join(self.condition_cols) or 'none'})"
            )
        lo, hi = min(self.thresholds), max(self.thresholds)  # the horizons trained with a threshold
        if not lo <= horizon <= hi:
            raise BadInputError(f"horizon {horizon:g} is outside the trained range [{lo:g}, {hi:g}]")
        unseen = unseen_condition_units(fleet, self.seen_conditions, self.condition_cols)
        if unseen:
            shown = "; ".join(unseen[:5]) + (f"; ... ({len(unseen)} in all)" if len(unseen) > 5 else "")
            warnings.warn(f"conditions unseen in training, scoring anyway: {shown}", UserWarning, stacklevel=3)

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.detector.save(directory)
        state = {
            "config": self.config.model_dump(),
            "spec": self.spec.to_dict(),
            "thresholds": [[h, t] for h, t in sorted(self.thresholds.items())],
            "seen_conditions": self.seen_conditions,
            "value_cols": self.value_cols,
            "condition_cols": self.condition_cols,
            "columns": self.columns,
            "duration": self.duration,
        }
        (directory / MODEL_CONFIG_NAME).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> DriftModel:
        directory = Path(directory)
        path = directory / MODEL_CONFIG_NAME
        if not path.is_file():
            raise BadInputError(f"{str(directory)!r} is not a drift model dir (no {MODEL_CONFIG_NAME}); run drift fit")
        try:
            state = json.loads(path.read_text())
            model = cls(DriftConfig(**state["config"]))
            model.spec = FeatureSpec.from_dict(state["spec"])
            model.thresholds = {float(h): float(t) for h, t in state["thresholds"]}
            model.seen_conditions = state["seen_conditions"]
            model.value_cols, model.condition_cols = state["value_cols"], state["condition_cols"]
            model.columns = state.get("columns", {})
            # models saved before the rule was recorded keep the rule of their saved feature spec
            model.duration = state.get("duration") or {}
            if model.duration:
                rule = model.duration["rule"]
                if rule not in {"per_unit", "fleet"}:
                    raise ValueError(f"unknown test-duration rule {rule!r}")
                model.spec.per_unit_duration = rule == "per_unit"
            model.detector = ConditionalVAE.load(directory)
        except (KeyError, ValueError, OSError) as exc:
            raise BadInputError(f"drift model in {str(directory)!r} is unreadable: {exc}") from None
        return model


def _quantile_threshold(scores: np.ndarray, detector: ConditionalVAE) -> float:
    from realignkit.drift.detectors import quantile_threshold

    return quantile_threshold(scores, detector.threshold_config)
