"""Helpers shared by the drift tests (kept tiny: the drift suite budget is 2 minutes)."""

from __future__ import annotations

from realignkit.drift.cvae import CVAEConfig
from realignkit.drift.drift_model import DriftConfig

LASER_COLUMNS = ["--time-col", "hours", "--value-col", "current_increase_pct",
                 "--condition-col", "temperature_c", "--condition-col", "current_ma"]


def quick_config(**extra) -> DriftConfig:
    cvae = CVAEConfig(epochs=40, min_updates=400, direction="increase")
    return DriftConfig(cvae=cvae, horizons=[0.3, 0.5, 1.0], **extra)


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path
