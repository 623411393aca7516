import numpy as np
import pytest
from drift_helpers import write_csv

from realignkit.common import BadInputError
from realignkit.drift.table import load_long_table

HEADER = ["unit", "time", "value", "temp"]


def test_irregular_times_sorted_duplicates_averaged_missing_dropped(tmp_path):
    path = write_csv(tmp_path / "f.csv", HEADER,
                     [["a", 30, 3.0, 50], ["a", 10, 1.0, 50], ["a", 10, 2.0, 50], ["a", 20, "", 50], ["a", 25, "NA", 50],
                      ["b", 5, 0.5, 60], ["b", 17, 1.7, 60]])
    fleet = load_long_table(path, value_cols=["value"], condition_cols=["temp"])
    a = fleet.units[0]
    assert a.times.tolist() == [10.0, 30.0]
    assert a.values[:, 0].tolist() == [1.5, 3.0]
    assert fleet.units[1].conditions.tolist() == [60.0]


def test_missing_columns_are_named(tmp_path):
    path = write_csv(tmp_path / "f.csv", HEADER, [["a", 1, 1, 1], ["a", 2, 2, 1]])
    with pytest.raises(BadInputError, match=r"missing .*'hours'.*'temperature'"):
        load_long_table(path, time_col="hours", value_cols=["value"], condition_cols=["temperature"])


def test_non_numeric_value_names_the_row(tmp_path):
    path = write_csv(tmp_path / "f.csv", HEADER, [["a", 1, 1, 1], ["a", 2, "high", 1]])
    with pytest.raises(BadInputError, match=r"'high' at f.csv row 3, column 'value'"):
        load_long_table(path, value_cols=["value"], condition_cols=["temp"])


def test_unit_with_single_reading_is_refused(tmp_path):
    path = write_csv(tmp_path / "f.csv", HEADER, [["a", 1, 1, 1], ["a", 2, 2, 1], ["lonely", 1, 1, 1]])
    with pytest.raises(BadInputError, match=r"unit 'lonely'.*1 usable reading"):
        load_long_table(path, value_cols=["value"], condition_cols=["temp"])


def test_condition_varying_within_a_unit_is_refused(tmp_path):
    path = write_csv(tmp_path / "f.csv", HEADER, [["a", 1, 1, 1], ["a", 2, 2, 5]])
    with pytest.raises(BadInputError, match="varies within unit 'a'"):
        load_long_table(path, value_cols=["value"], condition_cols=["temp"])


def test_parquet_needs_pyarrow_or_reads(tmp_path):
    pytest.importorskip("numpy")
    path = tmp_path / "f.parquet"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(BadInputError, match="pyarrow"):
            load_long_table(path, value_cols=["value"])
        return
    pq.write_table(pa.table({"unit": ["a", "a"], "time": [1.0, 2.0], "value": [0.1, 0.2]}), path)
    fleet = load_long_table(path, value_cols=["value"])
    assert np.allclose(fleet.units[0].values[:, 0], [0.1, 0.2])
