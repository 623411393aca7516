import json

import pytest
from drift_helpers import write_csv

from realignkit.common import BadInputError
from realignkit.drift.lab_fleet import CONDITION_COLS, load_lab_fleet

TRAJ = ["step", "harmful_refusal", "new_skill_accuracy", "old_skill_accuracy", "loss"]


def _lab(tmp_path):
    models = {"base": {"path": "base", "kind": "full"}, "aligned": {"path": "aligned", "kind": "full"}}
    runs = {"benign-full": ("full", 1e-4, 0.0, [0.95, 0.94, 0.93]),
            "harmful-mix-0.2-lora": ("lora", 1e-3, 0.2, [0.95, 0.5, 0.1])}
    for name, (kind, lr, ratio, refusal) in runs.items():
        (tmp_path / name).mkdir()
        write_csv(tmp_path / name / "trajectory.csv", TRAJ, [[s * 10, r, 0.5, 0.5, 1.0] for s, r in enumerate(refusal)])
        models[name] = {"path": name, "kind": kind, "lr": lr, "steps": 20, "epochs": 1, "harmful_ratio": ratio,
                        "scenario": name}
    (tmp_path / "lab.json").write_text(json.dumps({"models": models}))
    return tmp_path


def test_lab_dir_becomes_a_fleet_of_runs(tmp_path):
    fleet = load_lab_fleet(_lab(tmp_path))
    assert fleet.unit_ids == ["benign-full", "harmful-mix-0.2-lora"]  # base / aligned have no trajectory
    assert fleet.condition_cols == CONDITION_COLS
    harmful = fleet.units[1]
    assert harmful.label == 1 and fleet.units[0].label == 0
    assert harmful.conditions.tolist() == pytest.approx([-3.0, 20.0, 0.2, 1.0])
    assert harmful.times.tolist() == [0.0, 10.0, 20.0]


def test_fleet_csv_from_lab_fleet(tmp_path):
    header = ["unit", *TRAJ, "lr", "steps", "harmful_ratio", "kind"]
    rows = [["r1", s, v, 0, 0, 0, 0.001, 40, 0.1, "lora"] for s, v in ((0, 0.9), (20, 0.6), (40, 0.3))]
    rows += [["r2", s, v, 0, 0, 0, 0.0001, 20, 0.0, "full"] for s, v in ((0, 0.9), (20, 0.9))]
    fleet = load_lab_fleet(write_csv(tmp_path / "fleet.csv", header, rows))
    assert [u.label for u in fleet.units] == [1, 0]
    bad = write_csv(tmp_path / "bad.csv", header, [["r1", 0, 0.9, 0, 0, 0, 0.001, 40, 0.1, "qlora"],
                                                   ["r1", 1, 0.9, 0, 0, 0, 0.001, 40, 0.1, "qlora"]])
    with pytest.raises(BadInputError, match="kind must be"):
        load_lab_fleet(bad)


def test_not_a_lab_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="neither a lab dir"):
        load_lab_fleet(tmp_path)
