"""Physics-based laser aging fleet generator (VCSEL and edge-emitting presets).

Per unit, the % increase of drive current at constant output power, measured at its stress point, is

    ΔI(t) = AF(T, J) · [ A_u · (t / t_end)^m_u  +  jump_u · 1(t ≥ t_jump) ]  +  noise

- gradual wear-out ∝ t^m (m ≈ 0.5 diffusion-limited, ≈ 1 linear) with unit-to-unit spread in A_u and m_u;
- Arrhenius temperature and power-law current acceleration AF = exp(Ea/k (1/T_ref − 1/T)) · (J/J_ref)^n,
  with each unit's operating point recorded as conditions (AF = 1 at the preset's reference point);
- a "weak" (freak) sub-population with a larger A_u, as seen in laser lots with defective devices;
- sudden failures: an abrupt jump at a random time, Weibull-distributed with shape < 1 (infant-mortality-like:
  most happen early, some late, and a late one cannot be predicted from an early prefix);
- Gaussian measurement noise, jittered reading times and dropped readings;
- label (end of test, %-increase criterion). `failure_basis="reference"` (default): the end-of-test increase
  de-rated to the reference operating point, ΔI(t_end)/AF, reaches `failure_increase_pct`, the usual reading
  of an accelerated test (a device is judged at use conditions, so 12 % at high stress is not the same verdict
  as 12 % at low stress). `failure_basis="measured"`: the raw end-of-test increase reaches it; then the
  operating point carries no information about the label and a conditional model has nothing to gain.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from realignkit.common.errors import BadInputError, closest_match
from realignkit.drift.table import Fleet, UnitSeries

BOLTZMANN_EV = 8.617333e-5
CONDITION_COLS = ["temperature_c", "current_ma"]
VALUE_COL = "current_increase_pct"


class LaserPreset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    duration_h: float = Field(gt=0)
    reading_interval_h: float = Field(gt=0)
    time_jitter_h: float = Field(0.0, ge=0)
    missing_fraction: float = Field(0.0, ge=0, lt=0.5)
    exponent_m: float = Field(gt=0)
    exponent_spread: float = Field(0.05, ge=0)
    median_increase_pct: float = Field(gt=0)  # main population, at the reference operating point, at t_end
    unit_spread: float = Field(0.25, ge=0)  # σ of log A_u
    activation_energy_ev: float = Field(ge=0)
    current_exponent: float = Field(ge=0)
    temperatures_c: list[float]
    currents_ma: list[float]
    weak_fraction: float = Field(0.0, ge=0, le=1)
    weak_factor: float = Field(10.0, ge=1)  # median multiplier of A_u for weak units
    sudden_fraction: float = Field(0.0, ge=0, le=1)
    sudden_jump_pct: tuple[float, float] = (20.0, 50.0)  # at the reference point; scaled by AF
    sudden_time_shape: float = Field(0.5, gt=0)  # Weibull shape of the jump time (< 1: mostly early)
    sudden_time_scale: float = Field(0.1, gt=0)  # Weibull scale, as a fraction of the test duration
    noise_pct: float = Field(0.2, ge=0)
    failure_increase_pct: float = Field(gt=0)
    failure_basis: Literal["reference", "measured"] = "reference"

    @property
    def reference_point(self) -> tuple[float, float]:
        return float(np.median(self.temperatures_c)), float(np.median(self.currents_ma))


PRESETS: dict[str, LaserPreset] = {
    "vcsel": LaserPreset(
        name="vcsel", duration_h=5000, reading_interval_h=100, time_jitter_h=10, missing_fraction=0.03,
        exponent_m=0.5, median_increase_pct=5.0, activation_energy_ev=0.5, current_exponent=2.0,
        temperatures_c=[70, 85, 100], currents_ma=[8, 10, 12], weak_fraction=0.12, weak_factor=6.0,
        sudden_fraction=0.03, sudden_jump_pct=(25.0, 60.0), noise_pct=0.3, failure_increase_pct=12.0,
    ),
    "edge": LaserPreset(
        name="edge", duration_h=4000, reading_interval_h=100, time_jitter_h=10, missing_fraction=0.03,
        exponent_m=1.0, exponent_spread=0.08, median_increase_pct=4.0, activation_energy_ev=0.4,
        current_exponent=1.5, temperatures_c=[60, 75, 90], currents_ma=[80, 100, 120], weak_fraction=0.12,
        weak_factor=6.0, sudden_fraction=0.03, sudden_jump_pct=(15.0, 40.0), noise_pct=0.15,
        failure_increase_pct=10.0,
    ),
    # one operating point, 250 h readings to 4,000 h, 10 % criterion: the shape of the GaAs test (Meeker &
    # Escobar 1998, Table C.17). Its median rate and spread are placeholders: use scale_matched_preset().
    "gaas": LaserPreset(
        name="gaas", duration_h=4000, reading_interval_h=250, exponent_m=1.0, exponent_spread=0.08,
        median_increase_pct=7.0, unit_spread=0.2, activation_energy_ev=0.0, current_exponent=0.0,
        temperatures_c=[80], currents_ma=[1], noise_pct=0.15, failure_increase_pct=10.0,
    ),
}

CONDITION_MIXES = ("levels", "continuous", "hot", "cold")


def get_preset(name: str) -> LaserPreset:
    if name not in PRESETS:
        raise BadInputError(f"unknown laser preset {name!r}{closest_match(name, PRESETS)}; choose {', '.join(PRESETS)}")
    return PRESETS[name]


def acceleration_factor(preset: LaserPreset, temperature_c: np.ndarray, current_ma: np.ndarray) -> np.ndarray:
    """Arrhenius × power-law acceleration relative to the preset's reference point (1.0 there)."""
    t_ref, j_ref = preset.reference_point
    inv = 1.0 / (t_ref + 273.15) - 1.0 / (temperature_c + 273.15)
    return np.exp(preset.activation_energy_ev / BOLTZMANN_EV * inv) * (current_ma / j_ref) ** preset.current_exponent


def _draw_conditions(preset: LaserPreset, n: int, mix: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    temps, currents = np.asarray(preset.temperatures_c, float), np.asarray(preset.currents_ma, float)
    if mix == "continuous":
        return rng.uniform(temps.min(), temps.max(), n), rng.uniform(currents.min(), currents.max(), n)
    weights = {"levels": np.ones(len(temps)), "hot": np.arange(1, len(temps) + 1.0) ** 2,
               "cold": np.arange(len(temps), 0, -1.0) ** 2}.get(mix)
    if weights is None:
        raise BadInputError(f"unknown condition mix {mix!r}{closest_match(mix, CONDITION_MIXES)}")
    t_weights = weights / weights.sum()
    j_weights = np.ones(len(currents)) / len(currents)
    return rng.choice(temps, n, p=t_weights), rng.choice(currents, n, p=j_weights)


def generate_laser_fleet(
    preset: LaserPreset | str = "vcsel", n_units: int = 200, *, seed: int = 0, mix: str = "levels"
) -> Fleet:
    """A synthetic aging-test fleet with conditions temperature_c, current_ma and a failure label per unit."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if n_units < 1:
        raise BadInputError("n_units must be at least 1")
    rng = np.random.default_rng(seed)
    temps, currents = _draw_conditions(preset, n_units, mix, rng)
    accel = acceleration_factor(preset, temps, currents)  # (n_units,)
    weak = rng.random(n_units) < preset.weak_fraction
    amplitude = preset.median_increase_pct * np.exp(preset.unit_spread * rng.standard_normal(n_units))
    amplitude *= np.where(weak, preset.weak_factor * np.exp(0.3 * rng.standard_normal(n_units)), 1.0)
    exponent = np.clip(preset.exponent_m + preset.exponent_spread * rng.standard_normal(n_units), 0.1, None)
    sudden = rng.random(n_units) < preset.sudden_fraction
    jump_time = preset.duration_h * preset.sudden_time_scale * rng.weibull(preset.sudden_time_shape, n_units)
    jump_size = rng.uniform(*preset.sudden_jump_pct, n_units)
    units = []
    for i in range(n_units):
        times = _reading_times(preset, rng)
        jump_at = jump_time[i] if sudden[i] else np.inf
        path = accel[i] * _reference_path(times, preset, amplitude[i], exponent[i], jump_at, jump_size[i])
        end_ref = _reference_path(np.array([preset.duration_h]), preset, amplitude[i], exponent[i], jump_at,
                                  jump_size[i])[0]
        end = end_ref if preset.failure_basis == "reference" else accel[i] * end_ref
        measured = path + preset.noise_pct * rng.standard_normal(times.size)
        label = int(end >= preset.failure_increase_pct)
        units.append(UnitSeries(str(i + 1), times, measured.reshape(-1, 1), np.array([temps[i], currents[i]]), label))
    mechanism = np.where(sudden & (jump_time < preset.duration_h), "sudden", np.where(weak, "weak", "main"))
    ids = [u.unit for u in units]
    meta = {"preset": preset.name, "seed": seed, "mix": mix, "mechanism": dict(zip(ids, mechanism, strict=True)),
            "jump_time_h": {i: float(t) for i, t, s in zip(ids, jump_time, sudden, strict=True) if s}}
    return Fleet(units, [VALUE_COL], list(CONDITION_COLS), "unit", "hours", meta)


def _reading_times(preset: LaserPreset, rng: np.random.Generator) -> np.ndarray:
    nominal = np.arange(preset.reading_interval_h, preset.duration_h + 1e-9, preset.reading_interval_h)
    times = nominal + rng.uniform(-preset.time_jitter_h, preset.time_jitter_h, nominal.size)
    times[-1] = preset.duration_h  # the end-of-test reading is taken on schedule
    keep = rng.random(nominal.size) >= preset.missing_fraction
    keep[[0, -1]] = True
    return np.clip(times[keep], 1e-6, preset.duration_h)


def _reference_path(times, preset, rate, exponent, jump_time, jump_size) -> np.ndarray:
    """Noise-free ΔI(t) in % at the reference point: wear-out power law; after a sudden jump, a step and a
    second wear-out term starting at the jump (the damaged device degrades twice as fast)."""
    wear = rate * (times / preset.duration_h) ** exponent
    after = times >= jump_time
    extra_wear = rate * np.clip((times - jump_time) / preset.duration_h, 0, None) ** exponent
    return wear + np.where(after, jump_size + extra_wear, 0.0)


def scale_matched_preset(base: LaserPreset, fleet: Fleet, *, at_time: float) -> LaserPreset:
    """A copy of `base` whose median rate and unit spread match an unlabeled fleet's readings up to `at_time`.

    Used to build a healthy training fleet for a small real fleet (e.g. GaAs): only the early readings of all
    units are used, never their labels or their later readings. Assumes one operating point (no acceleration).
    """
    level = []
    for u in fleet.units:
        seen = u.times <= at_time
        if seen.sum() >= 2:
            level.append(np.interp(at_time, u.times[seen], u.values[seen, 0]))
    level = np.asarray(level)
    if level.size < 3 or np.any(level <= 0):
        raise BadInputError("need ≥ 3 units with positive readings before the matching time to match the scale")
    fraction = (at_time / base.duration_h) ** base.exponent_m
    median_end = float(np.exp(np.median(np.log(level)))) / fraction
    # median absolute deviation of log levels → σ of a normal; robust to the few failing units in the fleet
    spread = float(1.4826 * np.median(np.abs(np.log(level) - np.log(np.median(level)))))
    return base.model_copy(update={"median_increase_pct": median_end, "unit_spread": max(spread, 0.02)})
