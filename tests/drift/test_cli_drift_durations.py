"""`drift fit` / `drift score` on units with different test durations, and on all-healthy files (issue 11.4)."""

import csv
import json
import shutil

import numpy as np
import pytest
from drift_helpers import write_csv

from realignkit.cli import main

FIT_FAST = ["--epochs", "5"]


def _fleet_rows(ends, *, failed=(), step=100, labelled=True, seed=0):
    """Linear wear with noise; unit i is read every `step` up to ends[i]."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, end in enumerate(ends):
        for t in range(step, end + 1, step):
            value = f"{0.001 * t + 0.05 * rng.standard_normal():.4f}"
            rows.append([f"u{i}", t, value, int(i in failed)] if labelled else [f"u{i}", t, value])
    return rows


def _n_rows(path):
    with open(path, newline="") as handle:
        return len(list(csv.DictReader(handle)))


def _bad(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def mixed_durations(tmp_path_factory):
    """Half the units stop at t=500, the others run to t=2000 (e.g. one duration per operating point)."""
    tmp = tmp_path_factory.mktemp("mixed")
    data = write_csv(tmp / "fleet.csv", ["unit", "time", "value", "failed"],
                     _fleet_rows([500 if i % 2 else 2000 for i in range(10)]))
    model = tmp / "m"
    assert main(["drift", "fit", "--data", str(data), "--out", str(model), *FIT_FAST]) == 0
    return data, model


def test_different_durations_fit_and_score_without_flags(mixed_durations, tmp_path):
    data, model = mixed_durations
    state = json.loads((model / "drift_model.json").read_text())
    assert state["duration"] == {"rule": "per_unit", "chosen_by": "auto", "healthy_end_times": [500.0, 2000.0]}
    assert state["spec"]["per_unit_duration"] is True
    manifest = json.loads((model / "realignkit.json").read_text())
    assert manifest["summary"]["duration"]["rule"] == "per_unit"
    for horizon in ("0.2", "0.5", "1.0"):
        out = tmp_path / f"scores_{horizon}.csv"
        assert main(["drift", "score", "--model", str(model), "--data", str(data), "--horizon", horizon,
                     "--out", str(out)]) == 0
        assert _n_rows(out) == 10


def test_same_durations_keep_one_fleet_wide_duration(tmp_path):
    data = write_csv(tmp_path / "fleet.csv", ["unit", "time", "value", "failed"], _fleet_rows([2000] * 8))
    model = tmp_path / "m"
    assert main(["drift", "fit", "--data", str(data), "--out", str(model), *FIT_FAST]) == 0
    state = json.loads((model / "drift_model.json").read_text())
    assert state["duration"]["rule"] == "fleet" and state["duration"]["chosen_by"] == "auto"
    assert state["spec"]["per_unit_duration"] is False
    forced = tmp_path / "forced"
    assert main(["drift", "fit", "--data", str(data), "--out", str(forced), "--per-unit-duration", *FIT_FAST]) == 0
    state = json.loads((forced / "drift_model.json").read_text())
    assert state["duration"] == {"rule": "per_unit", "chosen_by": "config", "healthy_end_times": [2000.0, 2000.0]}


def test_unit_short_of_a_fleet_wide_duration_names_the_flag(tmp_path, capsys):
    # the healthy units all run to t=2000, so one fleet-wide duration is chosen; a failed unit stopped at t=500
    ends = [2000] * 8 + [500]
    data = write_csv(tmp_path / "fleet.csv", ["unit", "time", "value", "failed"], _fleet_rows(ends, failed={8}))
    model, out = tmp_path / "m", tmp_path / "scores.csv"
    assert main(["drift", "fit", "--data", str(data), "--out", str(model), *FIT_FAST]) == 0
    assert json.loads((model / "drift_model.json").read_text())["duration"]["rule"] == "fleet"
    capsys.readouterr()
    _bad(capsys, ["drift", "score", "--model", str(model), "--data", str(data), "--horizon", "0.5",
                  "--out", str(out)], "'u8'", "--horizon", "--per-unit-duration")
    assert not out.exists()
    per_unit = tmp_path / "per_unit"
    assert main(["drift", "fit", "--data", str(data), "--out", str(per_unit), "--per-unit-duration", *FIT_FAST]) == 0
    assert main(["drift", "score", "--model", str(per_unit), "--data", str(data), "--horizon", "0.5",
                 "--out", str(out)]) == 0
    assert _n_rows(out) == 9


def test_saved_model_without_the_duration_field_keeps_its_spec_rule(mixed_durations, tmp_path, capsys):
    data, model = mixed_durations
    old = tmp_path / "old"
    shutil.copytree(model, old)
    state = json.loads((old / "drift_model.json").read_text())
    del state["duration"]  # as saved before the rule was recorded: the spec's flag decides, as it did then
    state["config"]["per_unit_duration"] = False
    state["spec"]["per_unit_duration"] = False
    (old / "drift_model.json").write_text(json.dumps(state))
    out = tmp_path / "scores.csv"
    _bad(capsys, ["drift", "score", "--model", str(old), "--data", str(data), "--horizon", "0.5", "--out", str(out)],
         "--per-unit-duration")
    state["spec"]["per_unit_duration"] = True
    (old / "drift_model.json").write_text(json.dumps(state))
    assert main(["drift", "score", "--model", str(old), "--data", str(data), "--horizon", "0.5",
                 "--out", str(out)]) == 0
    assert _n_rows(out) == 10


def test_all_healthy_trains_without_a_label_column(tmp_path, capsys):
    data = write_csv(tmp_path / "healthy.csv", ["unit", "time", "value"], _fleet_rows([1000] * 8, labelled=False))
    model, out = tmp_path / "m", tmp_path / "scores.csv"
    _bad(capsys, ["drift", "fit", "--data", str(data), "--out", str(model), *FIT_FAST], "no label column 'failed'",
         "--all-healthy")
    assert not model.exists()
    assert main(["drift", "fit", "--data", str(data), "--out", str(model), "--all-healthy", *FIT_FAST]) == 0
    summary = json.loads((model / "realignkit.json").read_text())["summary"]
    assert (summary["units"], summary["healthy"], summary["failed"]) == (8, 8, 0)
    assert main(["drift", "score", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert _n_rows(out) == 8


def test_all_healthy_refuses_contradicting_labels(tmp_path, capsys):
    labelled = write_csv(tmp_path / "l.csv", ["unit", "time", "value", "failed"], _fleet_rows([1000] * 4, failed={1}))
    out = tmp_path / "m"
    _bad(capsys, ["drift", "fit", "--data", str(labelled), "--out", str(out), "--all-healthy", *FIT_FAST],
         "--all-healthy", "(u1)")
    _bad(capsys, ["drift", "fit", "--data", str(labelled), "--out", str(out), "--all-healthy", "--fail-above", "1",
                  *FIT_FAST], "--all-healthy")
    assert not out.exists()


def test_a_horizon_before_a_units_first_reading_asks_for_a_larger_horizon(mixed_durations, tmp_path, capsys):
    # the t=500 units are read every 100: at horizon 0.1 of their own test (t=50) they have no reading yet
    data, model = mixed_durations
    _bad(capsys, ["drift", "score", "--model", str(model), "--data", str(data), "--horizon", "0.1",
                  "--out", str(tmp_path / "s.csv")], "'u1'", "no reading before horizon 0.1", "larger --horizon")


def test_durations_differ_ignores_small_spreads_of_the_end_time():
    from realignkit.drift.features import durations_differ
    from realignkit.drift.table import Fleet, UnitSeries

    def fleet(ends):
        units = [UnitSeries(f"u{i}", np.arange(100.0, end + 1, 100.0), np.zeros((int(end // 100), 1)), np.zeros(0))
                 for i, end in enumerate(ends)]
        return Fleet(units, ["value"], [])

    assert not durations_differ(fleet([2000, 2000, 1900]))  # within the coverage tolerance of one duration
    assert durations_differ(fleet([2000, 2000, 500]))
