"""Long-table fleets: one row per (unit, reading), value columns, per-unit condition columns.

A *fleet* is a set of monitored units (lasers in an aging test, fine-tuning runs). Each unit has readings at
irregular times, one or more value columns (e.g. % drive-current increase), a fixed operating point
(condition columns such as temperature) and optionally a failure label.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realignkit.common.errors import BadInputError, closest_match

_MISSING_TOKENS = {"", "na", "nan", "null", "none", "-"}


@dataclass
class UnitSeries:
    """One unit: readings sorted by time, duplicates averaged, missing readings dropped."""

    unit: str
    times: np.ndarray  # (n_readings,)
    values: np.ndarray  # (n_readings, n_values)
    conditions: np.ndarray  # (n_conditions,)
    label: int | None = None

    @property
    def end_time(self) -> float:
        return float(self.times[-1])


@dataclass
class Fleet:
    """A fleet of units plus the column names it was read with."""

    units: list[UnitSeries]
    value_cols: list[str]
    condition_cols: list[str]
    unit_col: str = "unit"
    time_col: str = "time"
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.units)

    @property
    def unit_ids(self) -> list[str]:
        return [u.unit for u in self.units]

    def labels(self) -> np.ndarray:
        """(n_units,) int array of failure labels; BadInputError if any unit has none."""
        missing = [u.unit for u in self.units if u.label is None]
        if missing:
            raise BadInputError(f"no failure label for unit(s) {', '.join(missing[:5])}")
        return np.array([u.label for u in self.units], dtype=int)

    def subset(self, unit_ids: Iterable[str]) -> Fleet:
        wanted = set(unit_ids)
        return Fleet(
            [u for u in self.units if u.unit in wanted],
            self.value_cols,
            self.condition_cols,
            self.unit_col,
            self.time_col,
            dict(self.meta),
        )

    def truncated(self, max_time: float) -> Fleet:
        """Readings at or before max_time only (e.g. 'GaAs data up to 2,500 h')."""
        units = []
        for u in self.units:
            keep = u.times <= max_time
            units.append(UnitSeries(u.unit, u.times[keep], u.values[keep], u.conditions, u.label))
        return Fleet(units, self.value_cols, self.condition_cols, self.unit_col, self.time_col, dict(self.meta))


def parse_number(text: str, *, where: str) -> float:
    """Parse a cell; missing tokens give NaN, anything else non-numeric is a BadInputError naming `where`."""
    token = text.strip()
    if token.lower() in _MISSING_TOKENS:
        return math.nan
    try:
        return float(token)
    except ValueError:
        raise BadInputError(f"non-numeric value {token!r} at {where}") from None


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV or Parquet file (Parquet needs pyarrow, imported only here)."""
    if not path.is_file():
        raise BadInputError(f"data file {str(path)!r} does not exist")
    if path.suffix.lower() in {".parquet", ".pq"}:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BadInputError("reading Parquet needs pyarrow (pip install pyarrow), or pass a CSV") from None
        table = pq.read_table(path)
        header = list(table.column_names)
        columns = {name: table.column(name).to_pylist() for name in header}
        rows = [
            {name: "" if columns[name][i] is None else str(columns[name][i]) for name in header}
            for i in range(table.num_rows)
        ]
        return header, rows
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not header:
        raise BadInputError(f"data file {str(path)!r} is empty (no header row)")
    return header, rows


def read_header(path: str | os.PathLike[str]) -> list[str]:
    """Column names of a CSV or Parquet long table."""
    return _read_rows(Path(path))[0]


def _check_columns(header: Sequence[str], wanted: list[tuple[str, str]], path: Path) -> None:
    missing = [(role, name) for role, name in wanted if name not in header]
    if missing:
        parts = [f"{role} column {name!r}{closest_match(name, header)}" for role, name in missing]
        raise BadInputError(f"{path.name}: missing {'; '.join(parts)}; columns are {', '.join(header)}")


def load_long_table(
    path: str | os.PathLike[str],
    *,
    unit_col: str = "unit",
    time_col: str = "time",
    value_cols: Sequence[str] = ("value",),
    condition_cols: Sequence[str] = (),
    label_col: str | None = None,
) -> Fleet:
    """Read a long table into a Fleet. Every user-input problem is a one-line BadInputError."""
    file_path = Path(path)
    header, rows = _read_rows(file_path)
    if not value_cols:
        raise BadInputError("give at least one value column (--value-col)")
    wanted = [("unit", unit_col), ("time", time_col), *[("value", c) for c in value_cols],
              *[("condition", c) for c in condition_cols]]
    if label_col is not None:
        wanted.append(("label", label_col))
    _check_columns(header, wanted, file_path)
    return fleet_from_rows(
        rows,
        unit_col=unit_col,
        time_col=time_col,
        value_cols=list(value_cols),
        condition_cols=list(condition_cols),
        label_col=label_col,
        source=file_path.name,
    )


def fleet_from_rows(
    rows: Sequence[dict[str, str]],
    *,
    unit_col: str,
    time_col: str,
    value_cols: list[str],
    condition_cols: list[str],
    label_col: str | None = None,
    source: str = "table",
) -> Fleet:
    """Group string rows by unit and validate them (numbers, one operating point per unit, ≥ 2 readings)."""
    grouped: dict[str, list[tuple[float, list[float], list[float], float]]] = {}
    for index, row in enumerate(rows):
        line = index + 2  # 1-based, after the header row
        where = f"{source} row {line}"
        unit = (row.get(unit_col) or "").strip()
        if not unit:
            raise BadInputError(f"empty {unit_col!r} at {where}")
        time = parse_number(row[time_col], where=f"{where}, column {time_col!r}")
        if math.isnan(time):
            raise BadInputError(f"missing time at {where}, column {time_col!r}")
        values = [parse_number(row[c], where=f"{where}, column {c!r}") for c in value_cols]
        conds = [parse_number(row[c], where=f"{where}, column {c!r}") for c in condition_cols]
        label = parse_number(row[label_col], where=f"{where}, column {label_col!r}") if label_col else math.nan
        grouped.setdefault(unit, []).append((time, values, conds, label))
    if not grouped:
        raise BadInputError(f"{source} has a header but no rows")
    units = [_build_unit(unit, readings, condition_cols, source) for unit, readings in grouped.items()]
    return Fleet(units, value_cols, condition_cols, unit_col, time_col)


def _build_unit(unit: str, readings: list, condition_cols: list[str], source: str) -> UnitSeries:
    times = np.array([r[0] for r in readings], dtype=float)
    values = np.array([r[1] for r in readings], dtype=float).reshape(len(readings), -1)
    conditions = _unit_conditions(unit, np.array([r[2] for r in readings], dtype=float), condition_cols, source)
    labels = np.array([r[3] for r in readings], dtype=float)
    complete = ~np.isnan(values).any(axis=1)  # a reading with any missing value is dropped as a whole
    times, values = times[complete], values[complete]
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    times, values = _average_duplicate_times(times, values)
    if len(times) < 2:
        raise BadInputError(f"unit {unit!r} in {source} has {len(times)} usable reading(s); need at least 2")
    label = _unit_label(unit, labels, source)
    return UnitSeries(unit, times, values, conditions, label)


def _unit_conditions(unit: str, conds: np.ndarray, names: list[str], source: str) -> np.ndarray:
    # conds: (n_readings, n_conditions); the operating point is per unit, so it must not vary across readings
    if not names:
        return np.zeros(0)
    result = []
    for j, name in enumerate(names):
        column = conds[:, j][~np.isnan(conds[:, j])]
        if column.size == 0:
            raise BadInputError(f"unit {unit!r} in {source} has no value for condition {name!r}")
        if np.ptp(column) > 1e-9 * max(1.0, float(np.abs(column).max())):
            raise BadInputError(f"condition {name!r} varies within unit {unit!r} in {source}; it must be constant")
        result.append(float(column[0]))
    return np.array(result)


def _unit_label(unit: str, labels: np.ndarray, source: str) -> int | None:
    known = labels[~np.isnan(labels)]
    if known.size == 0:
        return None
    if np.any((known != 0) & (known != 1)):
        raise BadInputError(f"label of unit {unit!r} in {source} must be 0 (healthy) or 1 (failed)")
    return int(known.max())


def _average_duplicate_times(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(times, return_inverse=True)
    if unique.size == times.size:
        return times, values
    sums = np.zeros((unique.size, values.shape[1]))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse).reshape(-1, 1)
    return unique, sums / counts


def write_long_csv(fleet: Fleet, path: str | os.PathLike[str], *, label_col: str | None = "failed") -> None:
    """Write a Fleet back as a long CSV (unit, time, values..., conditions..., label)."""
    header = [fleet.unit_col, fleet.time_col, *fleet.value_cols, *fleet.condition_cols]
    if label_col:
        header.append(label_col)
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for u in fleet.units:
            conds = [_fmt(c) for c in u.conditions]
            tail = [] if not label_col else ["" if u.label is None else str(u.label)]
            for t, vals in zip(u.times, u.values, strict=True):
                writer.writerow([u.unit, _fmt(t), *[_fmt(v) for v in vals], *conds, *tail])


def _fmt(x: float) -> str:
    return f"{float(x):.6g}"
