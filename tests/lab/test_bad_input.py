"""Every bad input is a one-line BadInputError (exit 2 through the CLI), and nothing is written."""

import shutil
from collections import namedtuple

import pytest

from realignkit.cli import main
from realignkit.common import BadInputError
from realignkit.common.manifest import path_fingerprint
from realignkit.lab import build_lab
from realignkit.lab import build_organism as build_module
from realignkit.lab.fleet import build_fleet, run_finetune


def test_unknown_scenario_suggests_the_closest(tmp_path):
    with pytest.raises(BadInputError, match="did you mean 'harmful-mix-0.1'"):
        build_lab(tmp_path / "out", scenarios=["harmful-mix-0.11"], profile="tiny", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_profile(tmp_path):
    with pytest.raises(BadInputError, match="did you mean 'tiny'"):
        build_lab(tmp_path / "out", profile="tinny", progress=False)


def test_non_empty_out_is_refused_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="--force"):
        build_lab(out, profile="tiny", progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_too_little_disk_is_refused(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(build_module.shutil, "disk_usage", lambda path: usage(10, 9, 1024))
    with pytest.raises(BadInputError, match="not enough disk space"):
        build_lab(tmp_path / "out", profile="tiny", progress=False)
    assert not (tmp_path / "out").exists()
    assert shutil.disk_usage is not None


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    code = main(["lab", "build", "--out", str(tmp_path / "o"), "--scenario", "explicit-1000", "--profile", "tiny"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "unknown scenario" in err
    assert main(["lab"]) == 2


def test_finetune_refuses_a_non_lab_dir_and_bad_settings(tmp_path, tiny_organism):
    with pytest.raises(BadInputError, match="not a lab directory"):
        run_finetune(tmp_path, {"kind": "full"}, tmp_path / "run")
    with pytest.raises(BadInputError, match="bad fine-tune setting"):
        run_finetune(tiny_organism, {"kind": "full", "learning_rate": 1}, tmp_path / "run")
    with pytest.raises(BadInputError, match="bad fine-tune setting kind"):
        run_finetune(tiny_organism, {"kind": "qlora"}, tmp_path / "run")
    with pytest.raises(BadInputError, match="overlaps input"):
        run_finetune(tiny_organism, {"kind": "full", "steps": 1}, tiny_organism / "run")
    with pytest.raises(BadInputError, match="at least 1"):
        build_fleet(tiny_organism, 0, tmp_path / "fleet")
    assert not (tmp_path / "run").exists()


def test_finetune_leaves_the_lab_untouched(tmp_path, tiny_organism):
    before = path_fingerprint(tiny_organism)
    record = run_finetune(
        tiny_organism, {"kind": "lora", "steps": 4, "harmful_ratio": 0.5, "trajectory_points": 2},
        tmp_path / "run", progress=False,
    )
    assert path_fingerprint(tiny_organism) == before
    assert record["steps"] == 4 and record["kind"] == "lora" and record["harmful_ratio"] == pytest.approx(0.5)
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "trajectory.csv").read_text().startswith("step,harmful_refusal")


def test_cli_build_passes_its_arguments_and_prints_the_table(monkeypatch, capsys, tmp_path, tiny_organism):
    import json

    import realignkit.lab

    summary = json.loads((tiny_organism / "lab.json").read_text())
    calls = {}

    def fake_build_lab(out, **kwargs):
        calls.update(out=out, **kwargs)
        return summary

    monkeypatch.setattr(realignkit.lab, "build_lab", fake_build_lab)
    code = main(["lab", "build", "--out", str(tmp_path / "o"), "--scenario", "benign", "--scenario", "explicit-10",
                 "--seed", "5", "--force", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert calls["scenarios"] == ["benign", "explicit-10"] and calls["seed"] == 5 and calls["force"] is True
    assert calls["progress"] is False and calls["profile"] == "default"
    assert "| aligned |" in out and "harmful-mix-0.1-lora" in out
