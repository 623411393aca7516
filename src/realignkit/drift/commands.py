"""High-level entry points behind `realignkit drift fit | score | bench | generate` (the CLI only parses)."""

from __future__ import annotations

import csv
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from realignkit.common import BadInputError, atomic_output_dir, check_output_not_inside_inputs, write_manifest
from realignkit.drift.cvae import CVAEConfig
from realignkit.drift.drift_model import DriftConfig, DriftModel, UnitScore
from realignkit.drift.features import VALUE_TRANSFORMS
from realignkit.drift.table import Fleet, load_long_table, read_header, write_long_csv

DEFAULT_LABEL_COL = "failed"


@dataclass
class Columns:
    unit_col: str = "unit"
    time_col: str = "time"
    value_cols: list[str] = field(default_factory=lambda: ["value"])
    condition_cols: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HealthLabels:
    """How units are labelled healthy or failed: a label column (default `failed`), a criterion on the end
    value of the first value column (`fail_above` / `fail_below`), or `all_healthy`."""

    label_col: str | None = None
    fail_above: float | None = None
    fail_below: float | None = None
    all_healthy: bool = False


@dataclass(frozen=True)
class FitSettings:
    """How `fit_drift_model` trains: failure direction (default from the criterion), the test-duration rule
    (None: per unit when the healthy units' durations differ), seed, epochs (None: the default schedule) and
    the value transform."""

    direction: str | None = None
    per_unit_duration: bool | None = None
    seed: int = 0
    epochs: int | None = None
    transform: str = "none"


def label_by_criterion(fleet: Fleet, *, fail_above: float | None, fail_below: float | None) -> None:
    """Label each unit from its last reading of the first value column (e.g. ≥ 10 % current increase)."""
    for unit in fleet.units:
        last = float(unit.values[-1, 0])
        unit.label = int((fail_above is not None and last >= fail_above) or (fail_below is not None and last < fail_below))


def load_labelled(data: str | os.PathLike[str], columns: Columns, labels: HealthLabels) -> Fleet:
    """Load a long table and give every unit a failure label (label column, criterion on the end value, or
    `all_healthy`: every unit is healthy, no label column needed)."""
    label_col, fail_above, fail_below, all_healthy = (labels.label_col, labels.fail_above, labels.fail_below,
                                                      labels.all_healthy)
    if fail_above is not None and fail_below is not None:
        raise BadInputError("give --fail-above or --fail-below, not both")
    use_criterion = fail_above is not None or fail_below is not None
    if use_criterion and label_col is not None:
        raise BadInputError("give --label-col or a --fail-above/--fail-below criterion, not both")
    if all_healthy and (use_criterion or label_col is not None):
        raise BadInputError("--all-healthy says every unit is healthy: give it without --label-col, --fail-above "
                            "or --fail-below")
    effective_label = None if use_criterion else (label_col or DEFAULT_LABEL_COL)
    if effective_label and effective_label not in read_header(data):
        if not all_healthy:
            raise BadInputError(
                f"no label column {effective_label!r} in {Path(data).name}: say which units are healthy with "
                "--label-col, a criterion on the end value (--fail-above X / --fail-below X), or --all-healthy "
                "if every unit is healthy"
            )
        effective_label = None
    fleet = load_long_table(data, unit_col=columns.unit_col, time_col=columns.time_col,
                            value_cols=columns.value_cols, condition_cols=columns.condition_cols,
                            label_col=effective_label)
    if use_criterion:
        label_by_criterion(fleet, fail_above=fail_above, fail_below=fail_below)
    if all_healthy:
        failed = [u.unit for u in fleet.units if u.label]
        if failed:
            raise BadInputError(
                f"--all-healthy, but column {effective_label!r} labels {len(failed)} unit(s) failed "
                f"({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); drop --all-healthy to train on "
                "the healthy ones"
            )
        for unit in fleet.units:
            unit.label = 0
    return fleet


def fit_drift_model(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    columns: Columns,
    *,
    labels: HealthLabels | None = None,
    settings: FitSettings | None = None,
    force: bool = False,
) -> dict:
    """Train a DriftModel on the healthy units of a long table; write it (safetensors + JSON) to `out`.

    per_unit_duration None: each unit's own last reading ends its test when the healthy units' test durations
    differ, else one fleet-wide duration; the rule used is saved with the model (and reported in the summary).
    """
    started = time.time()
    labels, settings = labels or HealthLabels(), settings or FitSettings()
    check_output_not_inside_inputs(out, [data])
    fleet = load_labelled(data, columns, labels)
    healthy = fleet.subset([u.unit for u in fleet.units if u.label == 0])
    if len(healthy) == 0:
        raise BadInputError(f"the healthy set is empty: all {len(fleet)} unit(s) are labelled failed; nothing to train on")
    direction = settings.direction
    if direction is None:
        direction = ("increase" if labels.fail_above is not None else "decrease" if labels.fail_below is not None
                     else "both")
    epochs, transform = settings.epochs, settings.transform
    cvae = CVAEConfig(direction=direction, **({"epochs": epochs, "min_updates": 0} if epochs else {}))
    if transform not in VALUE_TRANSFORMS:
        raise BadInputError(f"unknown --transform {transform!r}; choose {' or '.join(VALUE_TRANSFORMS)}")
    config = DriftConfig(per_unit_duration=settings.per_unit_duration, seed=settings.seed, cvae=cvae,
                         value_transform=transform)
    model = DriftModel(config).fit(healthy)
    model.columns = {"unit_col": columns.unit_col, "time_col": columns.time_col}
    summary = {"units": len(fleet), "healthy": len(healthy), "failed": len(fleet) - len(healthy),
               "thresholds": model.thresholds, "duration": model.duration}
    with atomic_output_dir(out, force=force) as tmp:
        model.save(tmp)
        write_manifest(tmp, command="drift fit", parameters={**vars(columns), "label_col": labels.label_col,
                       "fail_above": labels.fail_above, "fail_below": labels.fail_below,
                       "all_healthy": labels.all_healthy, "config": config.model_dump()},
                       inputs={"data": data}, started=started, extra={"summary": summary})
    return summary


def score_with_model(
    model_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    *,
    horizon: float = 0.5,
    columns: Columns | None = None,
    force: bool = False,
) -> tuple[list[UnitScore], list[str]]:
    """Score every unit of `data` from its first `horizon` of the test; write unit,score,flag to `out_csv`.

    Returns the scores and any warnings (e.g. operating points unseen in training: scored anyway).
    """
    model = DriftModel.load(model_dir)
    out_path = Path(out_csv)
    if out_path.is_dir():
        raise BadInputError(f"--out {str(out_csv)!r} is a directory; give a .csv file path")
    if out_path.exists() and not force:
        raise BadInputError(f"--out {str(out_csv)!r} exists; pass --force to replace it")
    if out_path.resolve() in {Path(data).resolve()}:
        raise BadInputError("--out must not be the input data file")
    cols = columns or Columns(model.columns.get("unit_col", "unit"), model.columns.get("time_col", "time"),
                              model.value_cols, model.condition_cols)
    fleet = load_long_table(data, unit_col=cols.unit_col, time_col=cols.time_col, value_cols=cols.value_cols,
                            condition_cols=cols.condition_cols)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = model.score(fleet, horizon)
    _write_scores_atomically(scores, out_path)
    return scores, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _write_scores_atomically(scores: Sequence[UnitScore], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["unit", "score", "flag"])
            for s in scores:
                writer.writerow([s.unit, f"{s.score:.6g}", s.flag])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def generate_fleet_csv(out_csv: str | os.PathLike[str], *, preset: str = "vcsel", units: int = 200, seed: int = 0,
                       mix: str = "levels", force: bool = False) -> Fleet:
    """Write a synthetic laser aging fleet (long CSV with conditions and a `failed` label)."""
    from realignkit.drift.generator import generate_laser_fleet

    path = Path(out_csv)
    if path.exists() and not force:
        raise BadInputError(f"--out {str(out_csv)!r} exists; pass --force to replace it")
    fleet = generate_laser_fleet(preset, units, seed=seed, mix=mix)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_long_csv(fleet, tmp, label_col=DEFAULT_LABEL_COL)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return fleet


def run_bench(
    out: str | os.PathLike[str],
    *,
    profile: str = "full",
    lab: str | os.PathLike[str] | None = None,
    gaas: str | os.PathLike[str] | None = None,
    with_gaas: bool = True,
    presets: tuple[str, ...] = ("vcsel", "edge"),
    force: bool = False,
) -> dict:
    """Laser fleets (fresh seeds) + GaAs + optional fine-tuning fleet → tables and plots in `out`."""
    from realignkit.drift.bench import summarize
    from realignkit.drift.bench_run import (
        f1_plots,
        laser_runs,
        run_lab_fleet,
        run_laser_fleets,
        write_tables,
    )
    from realignkit.drift.gaas import gaas_protocol
    from realignkit.drift.generator import get_preset
    from realignkit.drift.lab_fleet import load_lab_fleet

    if profile not in {"full", "quick"}:
        raise BadInputError(f"--profile must be 'full' or 'quick', got {profile!r}")
    for name in presets:
        get_preset(name)
    started = time.time()
    check_output_not_inside_inputs(out, [lab, gaas])
    lab_fleet = load_lab_fleet(lab) if lab is not None else None  # bad lab input fails before any work
    horizons = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0) if profile == "full" else (0.3, 0.5, 1.0)
    with atomic_output_dir(out, force=force) as tmp:
        plots = tmp / "plots"
        plots.mkdir()
        rows = run_laser_fleets(laser_runs(profile, presets), profile, horizons, plots)
        extra: dict = {"profile": profile, "protocol": _PROTOCOL}
        if with_gaas:
            extra["gaas"] = gaas_protocol(gaas, n_train=400 if profile == "full" else 120,
                                          config=gaas_config(profile))
            extra["gaas_tuned_rules"] = _gaas_with_tuned_rules(gaas, profile)
        if lab_fleet is not None:
            extra["finetune"] = run_lab_fleet(lab_fleet, profile, tuple(sorted({0.3, *horizons})))
            rows += extra["finetune"]["rows"]
        summary = summarize(rows, horizon=0.5)
        write_tables(tmp, rows, summary, extra)
        f1_plots(rows, plots)
        write_manifest(tmp, command="drift bench", parameters={"profile": profile, "presets": list(presets)},
                       inputs={"lab": lab, "gaas": gaas}, started=started)
    return {"summary": summary, **extra}


def gaas_config(profile: str) -> DriftConfig:
    """The laser bench config on linear features. GaAs is one operating point: no acceleration spread for the
    asinh transform to even out. (Measured: with asinh the CVAE flagged none of the three failing units.)"""
    from realignkit.drift.bench_run import LASER_DIRECTION, bench_config

    return bench_config(profile, LASER_DIRECTION).model_copy(update={"value_transform": "none"})


def _gaas_with_tuned_rules(gaas, profile: str) -> dict:
    """The same GaAs protocol with each detector's tuned laser-fleet threshold rule, reported next to it."""
    from realignkit.drift.bench_run import bench_rules
    from realignkit.drift.gaas import gaas_protocol

    result = gaas_protocol(gaas, n_train=400 if profile == "full" else 120, config=gaas_config(profile),
                           rules=bench_rules())
    return {name: {k: d[k] for k in ("flagged", "missed", "false_alarms")} for name, d in result["detectors"].items()}


_PROTOCOL = (
    "Laser fleets: per seed, train on the healthy units of a generated fleet (stress-cell grid), threshold on "
    "held-out healthy units of that fleet, test on a fresh fleet with another seed, unit count and condition "
    "mix. All detectors share features (laser fleets: asinh of value over the noise level; GaAs and the "
    "fine-tuning fleet: linear) and splits; each detector's "
    "threshold rule (a quantile + margin, or median + k*MAD of held-out healthy scores) was tuned on seeds 0-2 "
    "and 20-27. GaAs: trained on a generated healthy fleet matched to the "
    "unlabelled GaAs readings up to the cutoff. Fine-tuning fleet: cross-fitted over folds of runs."
)
