import csv
import json

import numpy as np
import pytest
from drift_helpers import LASER_COLUMNS, write_csv

from realignkit.cli import main


@pytest.fixture(scope="module")
def fleet_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("fleet") / "fleet.csv"
    assert main(["drift", "generate", "--out", str(path), "--units", "60", "--seed", "2"]) == 0
    return path


@pytest.fixture(scope="module")
def model_dir(fleet_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["drift", "fit", "--data", str(fleet_csv), "--out", str(out), *LASER_COLUMNS, "--epochs", "5"]) == 0
    return out


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_writes_safetensors_json_and_manifest(model_dir):
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["detector.json", "detector.safetensors", "drift_model.json", "realignkit.json"]
    manifest = json.loads((model_dir / "realignkit.json").read_text())
    assert manifest["command"] == "drift fit" and manifest["summary"]["healthy"] > 0


def test_score_writes_unit_score_flag(model_dir, fleet_csv, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["drift", "score", "--model", str(model_dir), "--data", str(fleet_csv), "--horizon", "0.5",
                 "--out", str(out)]) == 0
    rows = _rows(out)
    assert list(rows[0]) == ["unit", "score", "flag"]
    assert len(rows) == 60 and {r["flag"] for r in rows} <= {"0", "1"}
    assert all(np.isfinite(float(r["score"])) for r in rows)
    assert main(["drift", "score", "--model", str(model_dir), "--data", str(fleet_csv), "--out", str(out)]) == 2


def test_asinh_transform_is_saved_and_used_when_scoring(fleet_csv, tmp_path):
    from realignkit.drift.drift_model import DriftModel

    model, out = tmp_path / "m", tmp_path / "scores.csv"
    assert main(["drift", "fit", "--data", str(fleet_csv), "--out", str(model), *LASER_COLUMNS, "--epochs", "5",
                 "--transform", "asinh"]) == 0
    spec = DriftModel.load(model).spec
    assert spec.value_transform == "asinh" and spec.noise_scale[0] > 0
    assert main(["drift", "score", "--model", str(model), "--data", str(fleet_csv), "--out", str(out)]) == 0
    assert len(_rows(out)) == 60


def _bad(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_columns_are_named_and_nothing_is_written(fleet_csv, tmp_path, capsys):
    out = tmp_path / "m"
    _bad(capsys, ["drift", "fit", "--data", str(fleet_csv), "--out", str(out), "--time-col", "hours",
                  "--value-col", "current_increase_pct", "--condition-col", "temperature"], "'temperature'", "did you mean")
    assert not out.exists()


def test_single_reading_and_non_numeric_rows(tmp_path, capsys):
    header = ["unit", "time", "value", "failed"]
    single = write_csv(tmp_path / "single.csv", header, [["a", 1, 1, 0], ["a", 2, 2, 0], ["b", 1, 1, 0]])
    _bad(capsys, ["drift", "fit", "--data", str(single), "--out", str(tmp_path / "m1")], "unit 'b'", "1 usable")
    text = write_csv(tmp_path / "text.csv", header, [["a", 1, 1, 0], ["a", 2, "oops", 0]])
    _bad(capsys, ["drift", "fit", "--data", str(text), "--out", str(tmp_path / "m2")], "'oops'", "row 3")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_empty_healthy_set_and_missing_label(tmp_path, capsys):
    header = ["unit", "time", "value", "failed"]
    all_failed = write_csv(tmp_path / "f.csv", header, [["a", 1, 1, 1], ["a", 2, 2, 1], ["b", 1, 1, 1], ["b", 2, 3, 1]])
    _bad(capsys, ["drift", "fit", "--data", str(all_failed), "--out", str(tmp_path / "m")], "healthy set is empty")
    unlabeled = write_csv(tmp_path / "u.csv", header[:3], [["a", 1, 1], ["a", 2, 2]])
    _bad(capsys, ["drift", "fit", "--data", str(unlabeled), "--out", str(tmp_path / "m")], "--fail-above")
    assert not (tmp_path / "m").exists()


def test_unseen_conditions_warn_and_score_anyway(model_dir, fleet_csv, tmp_path, capsys):
    rows = _rows(fleet_csv)
    for row in rows:
        if row["unit"] == "1":
            row["temperature_c"] = "140"
    shifted = tmp_path / "shifted.csv"
    write_csv(shifted, list(rows[0]), [list(r.values()) for r in rows])
    out = tmp_path / "s.csv"
    assert main(["drift", "score", "--model", str(model_dir), "--data", str(shifted), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "unit 1 temperature_c=140" in err
    assert len(_rows(out)) == 60


def test_bench_quick_writes_tables_and_plots_with_a_lab_fleet(tmp_path):
    header = ["unit", "step", "harmful_refusal", "new_skill_accuracy", "old_skill_accuracy", "loss", "lr", "steps",
              "harmful_ratio", "kind"]
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        ratio = [0.0, 0.0, 0.1, 0.2][i % 4]
        for step in range(0, 50, 10):
            refusal = max(0.0, 0.95 - ratio * 6.0 * step / 40 + 0.02 * rng.standard_normal())
            rows.append([f"r{i}", step, f"{refusal:.3f}", 0, 0, 0, 1e-3, 40, ratio, "lora" if i % 2 else "full"])
    lab = write_csv(tmp_path / "fleet.csv", header, rows)
    out = tmp_path / "bench"
    assert main(["drift", "bench", "--out", str(out), "--profile", "quick", "--preset", "vcsel", "--no-gaas",
                 "--lab", str(lab)]) == 0
    for name in ("results.csv", "results.json", "results.md", "realignkit.json", "plots/f1_vs_horizon_vcsel.png",
                 "plots/f1_vs_horizon_finetune.png", "plots/trajectories_vcsel.png"):
        assert (out / name).is_file(), name
    result = json.loads((out / "results.json").read_text())
    detectors = {r["detector"] for r in result["rows"]}
    assert detectors == {"cvae", "iforest", "ocsvm", "lof", "ae"}
    assert result["finetune"]["n_units"] == 12 and result["finetune"]["n_failed"] == 6
    assert "| vcsel | cvae |" in (out / "results.md").read_text()


def test_drift_without_an_action_is_a_one_line_error(capsys):
    _bad(capsys, ["drift"], "choose an action")
