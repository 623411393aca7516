"""`realignkit repair` through the CLI: recipes, flags, and every bad input (exit 2, one line, nothing written)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.models import build_lora_adapter, build_tiny_llama
from realignkit.cli import main
from realignkit.common import path_fingerprint


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop what fixtures printed
    code = main(["repair", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.err


def assert_refused(capsys, tmp_path, fragment, *argv, out_name="out"):
    """Exit 2, exactly one stderr line containing fragment, no output and no temp leftovers."""
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / out_name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_ties_and_recipe_give_identical_output(capsys, tiny_family, tmp_path):
    code, _ = run_cli(capsys, "ties", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"],
                      "--tuned", tiny_family["tuned2"], "--set", "density=0.3", "--set", "weights=0.7,0.3",
                      "--out", tmp_path / "cli", "--quiet")
    assert code == 0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "method: ties\nparameters: {density: 0.3, weights: [0.7, 0.3]}\n"
        f"models:\n  aligned: {tiny_family['aligned']}\n  tuned: [{tiny_family['tuned']}, {tiny_family['tuned2']}]\n"
        "out: from_recipe\n"
    )
    code, _ = run_cli(capsys, "--config", recipe, "--quiet")
    assert code == 0
    a, b = load_file(str(tmp_path / "cli" / "model.safetensors")), load_file(str(tmp_path / "from_recipe" / "model.safetensors"))
    assert all(torch.equal(a[n], b[n]) for n in a)
    manifest = json.loads((tmp_path / "from_recipe" / "realignkit.json").read_text())
    assert manifest["parameters"]["density"] == 0.3 and manifest["parameters"]["weights"] == [0.7, 0.3]


def test_cli_flag_overrides_recipe_parameter(capsys, tiny_family, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: interpolate\nparameters: {{alpha: 0.2}}\nmodels: {{aligned: {tiny_family['aligned']}, "
                      f"tuned: {tiny_family['tuned']}}}\n")
    code, _ = run_cli(capsys, "--config", recipe, "--set", "alpha=0.9", "--out", tmp_path / "o", "--quiet")
    assert code == 0
    assert json.loads((tmp_path / "o" / "realignkit.json").read_text())["parameters"]["alpha"] == 0.9


def test_recipe_unknown_key(capsys, tiny_family, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: ties\nparamters: {density: 0.3}\n")
    assert_refused(capsys, tmp_path, "did you mean 'parameters'", "--config", recipe, "--out", tmp_path / "out")


def test_unknown_method(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "did you mean 'slerp'", "slerpp", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--out", tmp_path / "out")


def test_unknown_parameter(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "did you mean 'density'", "ties", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--set", "desnity=0.3", "--out", tmp_path / "out")


def test_parameter_out_of_range(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "density", "ties", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--set", "density=1.5", "--out", tmp_path / "out")


def test_weights_count_must_match_tuned(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "weights has 3", "task_arithmetic", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--set", "weights=1,1,1", "--out", tmp_path / "out")


def test_missing_shard(capsys, tiny_family, tiny_llama_sharded_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_sharded_dir, broken)
    (broken / "model-00003-of-00003.safetensors").unlink()
    assert_refused(capsys, tmp_path, "missing shard", "interpolate", "--aligned", tiny_family["aligned"],
                   "--tuned", broken, "--out", tmp_path / "out")


def test_truncated_shard(capsys, tiny_family, tiny_llama_sharded_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_sharded_dir, broken)
    shard = broken / "model-00002-of-00003.safetensors"
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    assert_refused(capsys, tmp_path, "truncated", "interpolate", "--aligned", tiny_family["aligned"],
                   "--tuned", broken, "--out", tmp_path / "out")


def test_shape_mismatch(capsys, tiny_family, tmp_path):
    other = build_tiny_llama(tmp_path / "other", seed=4, config_overrides={"intermediate_size": 48})
    assert_refused(capsys, tmp_path, "shape mismatch", "interpolate", "--aligned", tiny_family["aligned"],
                   "--tuned", other, "--out", tmp_path / "out")


def _copy_without(src, dst, drop):
    dst.mkdir()
    state = load_file(str(src / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != drop}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(src / "config.json", dst / "config.json")


def test_missing_tensor_names_unless_allowed(capsys, tiny_family, tmp_path):
    partial = tmp_path / "partial"
    _copy_without(tiny_family["tuned2"], partial, "model.layers.1.mlp.up_proj.weight")
    args = ["task_arithmetic", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"], "--tuned", partial]
    assert_refused(capsys, tmp_path, "missing from --tuned", *args, "--out", tmp_path / "out")
    code, _ = run_cli(capsys, *args, "--allow-missing", "--out", tmp_path / "out", "--quiet")
    assert code == 0
    got, t1 = load_file(str(tmp_path / "out" / "model.safetensors")), load_file(str(tiny_family["tuned"] / "model.safetensors"))
    torch.testing.assert_close(got["model.layers.1.mlp.up_proj.weight"], t1["model.layers.1.mlp.up_proj.weight"])


@pytest.mark.parametrize("method", ["interpolate", "slerp", "ties"])
def test_nonfinite_inputs_unless_allowed(capsys, tiny_family, tmp_path, method):
    poisoned = tmp_path / "nan"
    poisoned.mkdir()
    state = load_file(str(tiny_family["tuned"] / "model.safetensors"))
    state["model.layers.0.mlp.gate_proj.weight"][0, 0] = float("nan")
    save_file(state, str(poisoned / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(tiny_family["tuned"] / "config.json", poisoned / "config.json")
    args = [method, "--aligned", tiny_family["aligned"], "--tuned", poisoned]
    assert_refused(capsys, tmp_path, "NaN or Inf", *args, "--out", tmp_path / "out")
    code, _ = run_cli(capsys, *args, "--allow-nonfinite", "--out", tmp_path / "out", "--quiet")
    assert code == 0


def test_adapter_from_another_base(capsys, tiny_family, tmp_path):
    other = build_tiny_llama(tmp_path / "other", seed=9, config_overrides={"hidden_size": 48})
    adapter = build_lora_adapter(other, tmp_path / "adapter", seed=1)
    assert_refused(capsys, tmp_path, "adapter does not match aligned", "interpolate", "--aligned",
                   tiny_family["aligned"], "--tuned", adapter, "--out", tmp_path / "out")


def test_pickle_checkpoint_needs_opt_in(capsys, tiny_family, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(load_file(str(tiny_family["tuned"] / "model.safetensors")), pickled / "pytorch_model.bin")
    shutil.copy(tiny_family["tuned"] / "config.json", pickled / "config.json")
    args = ["interpolate", "--aligned", tiny_family["aligned"], "--tuned", pickled]
    assert_refused(capsys, tmp_path, "--allow-pickle", *args, "--out", tmp_path / "out")
    code, _ = run_cli(capsys, *args, "--allow-pickle", "--out", tmp_path / "out", "--quiet")
    assert code == 0 and (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_output_equal_to_or_inside_input(capsys, tiny_family, tmp_path, where):
    model = tmp_path / "model"
    shutil.copytree(tiny_family["tuned"], model)
    before = path_fingerprint(model)
    out = model if where == "equal" else model / "repaired"
    code, err = run_cli(capsys, "interpolate", "--aligned", tiny_family["aligned"], "--tuned", model, "--out", out)
    assert code == 2 and "overlaps input" in err and len(err.strip().splitlines()) == 1
    assert path_fingerprint(model) == before
    assert not (model / "repaired").exists()


def test_method_needing_unaligned(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "needs --unaligned", "resta", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--out", tmp_path / "out")


def test_single_tuned_method_refuses_two(capsys, tiny_family, tmp_path):
    assert_refused(capsys, tmp_path, "exactly one --tuned", "slerp", "--aligned", tiny_family["aligned"],
                   "--tuned", tiny_family["tuned"], "--tuned", tiny_family["tuned2"], "--out", tmp_path / "out")


def _big_pair(root):
    """Two ~48 MB fp32 checkpoints with many tensors, so a repair takes long enough to interrupt."""
    gen = torch.Generator().manual_seed(0)
    for name in ("aligned", "tuned"):
        (root / name).mkdir(parents=True)
        state = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(384, 512, generator=gen) for i in range(60)}
        save_file(state, str(root / name / "model.safetensors"), metadata={"format": "pt"})
        (root / name / "config.json").write_text("{}")


def test_sigterm_mid_write_leaves_no_output(tmp_path):
    _big_pair(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "realignkit.cli", "repair", "ties", "--aligned", str(tmp_path / "aligned"),
           "--tuned", str(tmp_path / "tuned"), "--set", "density=0.2", "--shard-size", "2MB", "--threads", "1",
           "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.time() + 120
    written = False
    while time.time() < deadline and proc.poll() is None:
        temps = list(tmp_path.glob(".out.tmp-*"))
        if temps and len(list(temps[0].glob("model-*.safetensors"))) >= 2:
            written = True
            break
        time.sleep(0.005)
    assert written, "repair finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned", "tuned"]
