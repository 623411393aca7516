"""realignkit.drift: degradation prediction for fleets of monitored units (`realignkit drift`).

Method: Abdelli et al., "Degradation prediction of semiconductor lasers using conditional variational
autoencoder" (arXiv:2211.02847, 2022): a conditional VAE trained on healthy units only, conditioned on the
operating point, flags units whose early trajectory it explains badly, before the test ends.

Floor 2: reads tables only (laser aging CSVs, the lab's fine-tuning trajectories), never model weights.

    from realignkit.drift import load_long_table, DriftModel, DriftConfig
    fleet = load_long_table("fleet.csv", unit_col="unit", time_col="hours",
                            value_cols=["current_increase_pct"], condition_cols=["temperature_c", "current_ma"],
                            label_col="failed")
    model = DriftModel(DriftConfig()).fit(fleet.subset([u.unit for u in fleet.units if u.label == 0]))
    scores = model.score(fleet, horizon=0.5)            # [UnitScore(unit, score, flag)]

Pieces: `table` (long-table loader), `features` (prefix windows), `generator` (physics laser fleets),
`cvae` (ConditionalVAE, PlainAutoencoder), `detectors` (sklearn baselines, threshold rule), `model`
(DriftModel: multi-horizon CVAE + thresholds, save/load), `lab_fleet` (fine-tuning runs), `gaas` (real
GaAs data + protocol), `bench` / `runner` / `plots` (the bench), `api` (what the CLI calls).
"""

from realignkit.drift.cvae import ConditionalVAE, CVAEConfig, PlainAutoencoder
from realignkit.drift.detectors import SklearnDetector, ThresholdConfig
from realignkit.drift.drift_model import DriftConfig, DriftModel, UnitScore
from realignkit.drift.generator import PRESETS, LaserPreset, generate_laser_fleet
from realignkit.drift.lab_fleet import load_lab_fleet
from realignkit.drift.table import Fleet, UnitSeries, load_long_table

__all__ = [
    "PRESETS",
    "CVAEConfig",
    "ConditionalVAE",
    "DriftConfig",
    "DriftModel",
    "Fleet",
    "LaserPreset",
    "PlainAutoencoder",
    "SklearnDetector",
    "ThresholdConfig",
    "UnitScore",
    "UnitSeries",
    "generate_laser_fleet",
    "load_lab_fleet",
    "load_long_table",
]
