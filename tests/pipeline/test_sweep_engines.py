"""The sweep's engine and executor options: parsed, checked before any work, not part of the run's identity; and
the optional extras stay optional (ray and vllm are imported only when chosen)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from realignkit.cli import main
from realignkit.common import BadInputError
from realignkit.pipeline.executors import parse_memory
from realignkit.pipeline.sweep_config import build_config

ROOT = Path(__file__).resolve().parents[2]


def test_extras_are_optional_and_not_imported_by_default():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]]
    assert "ray" not in names and "vllm" not in names
    extras = project["optional-dependencies"]
    assert any(dep.startswith("ray") for dep in extras["ray"]) and any(dep.startswith("vllm") for dep in extras["vllm"])
    code = ("import sys, realignkit.cli, realignkit.pipeline.sweep, realignkit.pipeline.executors, "
            "realignkit.evaluation.audit; print(sorted({'ray', 'vllm'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_engine_settings_do_not_change_the_runs_identity(tiny_family):
    base = {"aligned": str(tiny_family["aligned"]), "tuned": str(tiny_family["tuned"]), "methods": ["interpolate"]}
    plain = build_config(base)
    engines = build_config({**base, "backend": "vllm", "device": "cpu",
                            "vllm": {"tensor_parallel_size": 2, "max_model_len": 512}})
    assert engines.vllm.tensor_parallel_size == 2 and engines.backend == "vllm"
    assert engines.fingerprint() == plain.fingerprint()
    with pytest.raises(BadInputError, match="vllm.gpu_memory_utilization"):
        build_config({**base, "vllm": {"gpu_memory_utilization": 2}})


@pytest.mark.parametrize("flags,message", [
    (["--max-model-len", "64"], "need --backend vllm"),
    (["--ray-address", "auto"], "need --executor ray"),
    (["--gpus-per-candidate", "1"], "need --executor ray"),
    (["--executor", "ray", "--backend", "vllm", "--tensor-parallel-size", "2", "--gpus-per-candidate", "1"],
     "--gpus-per-candidate 2 or more"),
    (["--executor", "ray", "--memory-per-candidate", "lots"], "--memory-per-candidate 'lots'"),
    (["--executor", "ray", "--cpus-per-candidate", "0"], "--cpus-per-candidate"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--backend", "vllm"], "realignkit[vllm]"),
])
def test_bad_engine_flags_are_one_line_before_any_work(tiny_family, tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed here
    out = tmp_path / "out"
    code = main(["sweep", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
                 "--methods", "interpolate", "--no-progress", *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_memory_sizes():
    assert parse_memory("16GB") == 16 * 10**9 and parse_memory("64GiB") == 64 * 2**30
    assert parse_memory("1024") == 1024 and parse_memory("1.5Mi") == int(1.5 * 2**20) and parse_memory(None) is None
    for bad in ("", "GB", "-3G", "12XB"):
        with pytest.raises(BadInputError):
            parse_memory(bad)
