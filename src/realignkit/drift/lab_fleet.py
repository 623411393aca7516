"""The organism's fine-tuning runs as a fleet: unit = run, value = harmful-prompt refusal rate per checkpoint.

Reads either a lab dir (`lab.json` + `<model>/trajectory.csv`, from `realignkit lab build`) or a fleet long
table (`fleet.csv` from `lab fleet`, or the dir holding it). Conditions: log10(lr), steps, harmful ratio,
is_lora. A run "fails" when its refusal rate at the end of fine-tuning is below `refusal_floor` (0.5).
Time is the step; each run's own last step ends its "test" (runs have different lengths).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from realignkit.common.errors import BadInputError
from realignkit.drift.table import Fleet, UnitSeries, parse_number

VALUE_COL = "harmful_refusal"
CONDITION_COLS = ["log10_lr", "steps", "harmful_ratio", "is_lora"]
TRAJECTORY_NAME = "trajectory.csv"


def load_lab_fleet(path: str | Path, *, refusal_floor: float = 0.5) -> Fleet:
    """A Fleet from a lab dir, a dir with fleet.csv, or a fleet CSV file."""
    source = Path(path)
    if source.is_dir() and (source / "lab.json").is_file():
        units = _units_from_lab_dir(source)
    elif source.is_dir() and (source / "fleet.csv").is_file():
        units = _units_from_fleet_csv(source / "fleet.csv")
    elif source.is_file():
        units = _units_from_fleet_csv(source)
    else:
        raise BadInputError(f"{str(path)!r} is neither a lab dir (lab.json) nor a fleet CSV")
    if not units:
        raise BadInputError(f"{str(path)!r} holds no fine-tuning run with a trajectory")
    for unit in units:
        unit.label = int(unit.values[-1, 0] < refusal_floor)
    meta = {"source": str(source), "refusal_floor": refusal_floor, "per_unit_duration": True}
    return Fleet(units, [VALUE_COL], list(CONDITION_COLS), "unit", "step", meta)


def _conditions(lr: object, steps: object, harmful_ratio: object, kind: object, where: str) -> np.ndarray:
    numbers = []
    for name, raw in (("lr", lr), ("steps", steps), ("harmful_ratio", harmful_ratio)):
        value = parse_number(str(raw if raw is not None else ""), where=f"{where}, {name}")
        if math.isnan(value):
            raise BadInputError(f"missing {name} at {where}")
        numbers.append(value)
    if numbers[0] <= 0:
        raise BadInputError(f"lr must be positive at {where}, got {numbers[0]:g}")
    if str(kind) not in {"full", "lora"}:
        raise BadInputError(f"kind must be 'full' or 'lora' at {where}, got {kind!r}")
    return np.array([math.log10(numbers[0]), numbers[1], numbers[2], float(kind == "lora")])


def _units_from_lab_dir(root: Path) -> list[UnitSeries]:
    summary = json.loads((root / "lab.json").read_text())
    units = []
    for name, record in sorted(summary.get("models", {}).items()):
        trajectory = root / str(record.get("path", name)) / TRAJECTORY_NAME
        if not trajectory.is_file():
            continue  # base / aligned have no fine-tuning trajectory
        times, values = _read_trajectory(trajectory)
        steps = record.get("steps", times[-1])
        where = f"lab.json models.{name}"
        conds = _conditions(record.get("lr"), steps, record.get("harmful_ratio"), record.get("kind"), where)
        units.append(UnitSeries(name, times, values, conds))
    return units


def _read_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "step" not in rows[0] or VALUE_COL not in rows[0]:
        raise BadInputError(f"{path} needs columns step and {VALUE_COL}")
    points = sorted(
        (parse_number(r["step"], where=f"{path.name} row {i + 2}"),
         parse_number(r[VALUE_COL], where=f"{path.name} row {i + 2}"))
        for i, r in enumerate(rows)
    )
    points = [p for p in points if not math.isnan(p[1])]
    if len(points) < 2:
        raise BadInputError(f"{path} has {len(points)} usable reading(s); need at least 2")
    times = np.array([p[0] for p in points])
    return times, np.array([p[1] for p in points]).reshape(-1, 1)


def _units_from_fleet_csv(path: Path) -> list[UnitSeries]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(reader)
    needed = ["unit", "step", VALUE_COL, "lr", "steps", "harmful_ratio", "kind"]
    missing = [c for c in needed if c not in header]
    if missing:
        raise BadInputError(f"{path.name}: missing column(s) {', '.join(missing)}; a lab fleet CSV has {', '.join(needed)}")
    by_unit: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for index, row in enumerate(rows):
        by_unit.setdefault(row["unit"], []).append((index + 2, row))
    units = []
    for unit, entries in by_unit.items():
        line, first = entries[0]
        conds = _conditions(first["lr"], first["steps"], first["harmful_ratio"], first["kind"],
                            f"{path.name} row {line}")
        points = sorted(
            (parse_number(r["step"], where=f"{path.name} row {n}, column 'step'"),
             parse_number(r[VALUE_COL], where=f"{path.name} row {n}, column {VALUE_COL!r}"))
            for n, r in entries
        )
        points = [p for p in points if not math.isnan(p[1])]
        if len(points) < 2:
            raise BadInputError(f"unit {unit!r} in {path.name} has {len(points)} usable reading(s); need at least 2")
        times = np.array([p[0] for p in points])
        units.append(UnitSeries(unit, times, np.array([p[1] for p in points]).reshape(-1, 1), conds))
    return units
