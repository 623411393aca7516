"""Fixed-length features from trajectory prefixes: resample the first k % of a test onto a fixed grid.

Every detector (the CVAE and every baseline) sees the same features: the prefix of each value column up to
horizon k, linearly interpolated onto `n_points` equally spaced times in [0, k·duration], divided by a
per-column scale learned from healthy training units; plus the standardized operating conditions.

Optional value transform "asinh": v ↦ asinh(v / σ), σ = the column's measurement-noise level estimated from
healthy readings. It is linear within the noise and logarithmic beyond it, so a multiplicative wear-out
(ΔI = A·AF(T, J)·t^m) has the same unit-to-unit spread at every operating point: a weak unit at a cold,
low-current point is then as far from its healthy peers as one at a hot point, where linear features make
the cold one look small. Defined at zero and for negative readings, unlike a log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from realignkit.common.errors import BadInputError
from realignkit.drift.table import Fleet, UnitSeries

# A unit must have a reading within this fraction of the test duration before the horizon; otherwise its
# prefix does not reach the horizon and interpolation would invent the missing end of the window.
COVERAGE_TOLERANCE = 0.1
ValueTransform = Literal["none", "asinh"]
VALUE_TRANSFORMS: tuple[str, ...] = ("none", "asinh")


@dataclass
class FeatureSpec:
    """How a fleet becomes feature vectors. Fitted on healthy training units, saved with the model."""

    n_points: int = 16
    duration: float = 1.0  # test duration in time units ("fleet" mode)
    per_unit_duration: bool = False  # each unit's own last reading ends its test (fine-tuning runs)
    value_scale: list[float] = field(default_factory=list)
    value_transform: ValueTransform = "none"
    noise_scale: list[float] = field(default_factory=list)  # per value column, for "asinh"
    condition_mean: list[float] = field(default_factory=list)
    condition_std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        spec = cls(**data)
        if spec.value_transform not in VALUE_TRANSFORMS:
            raise BadInputError(f"unknown value transform {spec.value_transform!r} in the saved model")
        return spec

    @classmethod
    def fit(cls, fleet: Fleet, *, n_points: int = 16, per_unit_duration: bool = False,
            value_transform: ValueTransform = "none") -> FeatureSpec:
        """Learn duration, noise level and scales from (healthy training) units."""
        if len(fleet) == 0:
            raise BadInputError("no healthy units to train on (the healthy set is empty)")
        if value_transform not in VALUE_TRANSFORMS:
            raise BadInputError(f"unknown value transform {value_transform!r}; choose {' or '.join(VALUE_TRANSFORMS)}")
        duration = max(u.end_time for u in fleet.units)
        spec = cls(n_points, float(duration), per_unit_duration, value_transform=value_transform)
        if value_transform == "asinh":
            spec.noise_scale = estimate_noise(fleet).tolist()
        transformed = np.concatenate([np.abs(spec.transform(u.values)) for u in fleet.units])  # (n_readings, n_values)
        # 90th percentile of |value|: robust to a few extreme healthy readings, never zero
        spec.value_scale = np.maximum(np.percentile(transformed, 90, axis=0), 1e-6).tolist()
        conds = np.stack([u.conditions for u in fleet.units])  # (n_units, n_conditions)
        mean = conds.mean(axis=0) if conds.size else np.zeros(0)
        std = conds.std(axis=0) if conds.size else np.zeros(0)
        spec.condition_mean, spec.condition_std = mean.tolist(), np.where(std > 1e-12, std, 1.0).tolist()
        return spec

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(n_readings, n_values) raw readings → the space the features live in (before scaling)."""
        if self.value_transform == "asinh":
            return np.arcsinh(values / np.asarray(self.noise_scale))
        return values

    def unit_duration(self, unit: UnitSeries) -> float:
        return unit.end_time if self.per_unit_duration else self.duration

    @staticmethod
    def _seen(unit: UnitSeries, end: float) -> np.ndarray:
        return unit.times <= end + 1e-9 * max(1.0, abs(end))

    def has_reading_before(self, unit: UnitSeries, horizon: float) -> bool:
        """Whether `unit` has a reading at or before `horizon` of its test (else it has no prefix there)."""
        return bool(self._seen(unit, horizon * self.unit_duration(unit)).any())

    def window(self, unit: UnitSeries, horizon: float) -> np.ndarray:
        """(n_points, n_values) resampled prefix of `unit` up to `horizon` of its test duration."""
        duration = self.unit_duration(unit)
        end = horizon * duration
        seen = self._seen(unit, end)  # causal: readings after the horizon are unused
        if not seen.any():
            raise BadInputError(f"unit {unit.unit!r} has no reading before horizon {horizon:g} (t={end:g}, first "
                                f"reading at t={unit.times[0]:g}); score at a larger --horizon")
        times, values = unit.times[seen], self.transform(unit.values[seen])
        if times[-1] < end - coverage_slack(unit, duration):
            fix = "score at a smaller --horizon"
            if not self.per_unit_duration:
                fix += (f", or, if units' tests run for different times, fit with --per-unit-duration (this model "
                        f"measures every unit's test against one duration, t={duration:g})")
            raise BadInputError(
                f"unit {unit.unit!r} has readings only up to t={times[-1]:g}, short of horizon {horizon:g} "
                f"(t={end:g}); {fix}"
            )
        grid = np.linspace(0.0, end, self.n_points)
        columns = [np.interp(grid, times, values[:, j]) for j in range(values.shape[1])]
        return np.stack(columns, axis=1) / np.asarray(self.value_scale)

    def features(self, fleet: Fleet, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """X (n_units, n_points·n_values) and C (n_units, n_conditions) for one horizon."""
        if not 0.0 < horizon <= 1.0:
            raise BadInputError(f"horizon must be in (0, 1], got {horizon:g}")
        x = np.stack([self.window(u, horizon).reshape(-1) for u in fleet.units])
        c = self.standardized_conditions(fleet)
        return x.astype(np.float32), c.astype(np.float32)

    def standardized_conditions(self, fleet: Fleet) -> np.ndarray:
        conds = np.stack([u.conditions for u in fleet.units])  # (n_units, n_conditions)
        if conds.shape[1] != len(self.condition_mean):
            raise BadInputError(
                f"data has {conds.shape[1]} condition column(s), the model was trained with {len(self.condition_mean)}"
            )
        return (conds - np.asarray(self.condition_mean)) / np.asarray(self.condition_std)


def coverage_slack(unit: UnitSeries, duration: float) -> float:
    """How far a unit's last reading may fall short of a window end: 10 % of the test, or 1.5 reading
    intervals for sparsely sampled units (e.g. 10 checkpoints)."""
    interval = float(np.median(np.diff(unit.times))) if unit.times.size > 1 else 0.0
    return max(COVERAGE_TOLERANCE * duration, 1.5 * interval)


def durations_differ(fleet: Fleet) -> bool:
    """True when measuring every unit against one test duration (the longest) cannot work: some unit's
    readings stop short of the end of that test by more than the coverage tolerance."""
    longest = max(u.end_time for u in fleet.units)
    return any(u.end_time < longest - coverage_slack(u, longest) for u in fleet.units)


def estimate_noise(fleet: Fleet) -> np.ndarray:
    """(n_values,) robust measurement-noise σ per value column, from second differences of healthy readings.

    For white noise of σ on a smooth trend, the second difference x[i+1] − 2x[i] + x[i−1] has σ·√6 (the smooth
    wear-out contributes little between neighbouring readings); 1.4826 · median |·| makes it robust to jumps.
    """
    diffs = [np.diff(u.values, n=2, axis=0) for u in fleet.units if len(u.values) >= 3]
    if not diffs:
        raise BadInputError("the asinh transform needs units with at least 3 readings to estimate the noise level")
    second = np.concatenate(diffs)  # (n, n_values)
    sigma = 1.4826 * np.median(np.abs(second), axis=0) / np.sqrt(6.0)
    # floor: 1 % of the column's typical magnitude (never zero), so a (nearly) noise-free column is not turned
    # into pure log compression of its smallest wiggles
    typical = np.percentile(np.abs(np.concatenate([u.values for u in fleet.units])), 90, axis=0)
    return np.maximum(sigma, np.maximum(0.01 * typical, 1e-9))


def unseen_condition_units(fleet: Fleet, seen: list[dict], names: list[str]) -> list[str]:
    """Describe units whose operating point lies outside what training saw (a warning, not an error).

    `seen[j]` is {"levels": [...]} for a condition with few distinct training values, else {"range": [lo, hi]}.
    """
    notes = []
    for u in fleet.units:
        for j, name in enumerate(names):
            value = float(u.conditions[j])
            if not _condition_seen(value, seen[j]):
                notes.append(f"unit {u.unit} {name}={value:g}")
    return notes


def _condition_seen(value: float, seen: dict) -> bool:
    if "range" in seen:
        low, high = seen["range"]
        margin = 1e-6 * max(1.0, abs(high - low))
        return low - margin <= value <= high + margin
    return any(abs(value - s) <= 1e-6 * max(1.0, abs(s)) for s in seen["levels"])


def describe_seen_conditions(fleet: Fleet, max_levels: int = 8) -> list[dict]:
    """Per condition column: its distinct training levels, or its [min, max] range when it is continuous."""
    conds = np.stack([u.conditions for u in fleet.units]) if len(fleet) else np.zeros((0, 0))
    seen: list[dict] = []
    for j in range(conds.shape[1]):
        levels = np.unique(np.round(conds[:, j], 9))
        if levels.size <= max_levels:
            seen.append({"levels": levels.tolist()})
        else:
            seen.append({"range": [float(levels.min()), float(levels.max())]})
    return seen
