"""Quantised checkpoints are refused (exit 2, one line, nothing written) by repair, diagnose, audit and sweep.

The quantised dirs are GPTQ/bitsandbytes-*shaped* (right names and dtypes, random codes): detection reads only
config.json and safetensors headers, so no quantisation library is needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from realignkit.checkpoints import ModelDirSource, check_not_quantized
from realignkit.checkpoints.quantized import config_marker, tensor_marker
from realignkit.cli import main
from realignkit.common import BadInputError

GPTQ_CONFIG = {"quant_method": "gptq", "bits": 4, "group_size": 16, "desc_act": False, "sym": True}
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _copy_meta(src: Path, dst: Path, quantization_config: dict | None) -> None:
    """Everything but the weights (config, tokenizer); optionally declare quantisation in config.json."""
    dst.mkdir()
    for extra in src.iterdir():
        if extra.is_file() and extra.suffix != ".safetensors":
            shutil.copy(extra, dst / extra.name)
    if quantization_config is not None:
        config = json.loads((dst / "config.json").read_text())
        config["quantization_config"] = quantization_config
        (dst / "config.json").write_text(json.dumps(config))


def _gptq_state(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Each Linear's `weight` replaced by 4-bit GPTQ tensors: int32 qweight/qzeros/g_idx, fp16 scales."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in state.items():
        if not (name.endswith(".weight") and name.rsplit(".", 2)[-2] in PROJ):
            out[name] = tensor.half()
            continue
        prefix, (rows, cols) = name.removesuffix(".weight"), tensor.shape  # [out, in]
        groups = cols // GPTQ_CONFIG["group_size"]
        out[f"{prefix}.qweight"] = torch.randint(-2**31, 2**31 - 1, (cols // 8, rows), generator=gen, dtype=torch.int32)
        out[f"{prefix}.qzeros"] = torch.randint(-2**31, 2**31 - 1, (groups, rows // 8), generator=gen, dtype=torch.int32)
        out[f"{prefix}.scales"] = torch.rand(groups, rows, generator=gen).half()
        out[f"{prefix}.g_idx"] = (torch.arange(cols) // GPTQ_CONFIG["group_size"]).int()
    return out


def build_gptq_like(src: Path, dst: Path, *, seed: int = 0, declare: bool = True) -> Path:
    _copy_meta(src, dst, GPTQ_CONFIG if declare else None)
    state = _gptq_state(load_file(str(src / "model.safetensors")), seed)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def build_bnb_like(src: Path, dst: Path, *, bits: int) -> Path:
    """bitsandbytes layout without its config: nf4 (uint8 weight + absmax/quant_map/quant_state) or int8 + SCB."""
    _copy_meta(src, dst, None)
    state = load_file(str(src / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    rows, cols = state[name].shape
    if bits == 4:
        state[name] = torch.zeros(rows * cols // 2, 1, dtype=torch.uint8)
        state[f"{name}.absmax"] = torch.ones(rows * cols // 64)
        state[f"{name}.quant_map"] = torch.linspace(-1, 1, 16)
        state[f"{name}.quant_state.bitsandbytes__nf4"] = torch.zeros(64, dtype=torch.uint8)
    else:
        state[name] = torch.zeros(rows, cols, dtype=torch.int8)
        state[name.replace(".weight", ".SCB")] = torch.ones(rows)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def quantised(tiny_family, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quantised")
    return {
        "aligned": build_gptq_like(tiny_family["aligned"], root / "aligned_gptq", seed=0),
        "tuned": build_gptq_like(tiny_family["tuned"], root / "tuned_gptq", seed=1),
        "tensors_only": build_gptq_like(tiny_family["tuned"], root / "tuned_gptq_noconfig", declare=False),
        "config_only": _fp_with_config(tiny_family["tuned"], root / "tuned_config_only"),
        "bnb4": build_bnb_like(tiny_family["tuned"], root / "tuned_bnb4", bits=4),
        "bnb8": build_bnb_like(tiny_family["tuned"], root / "tuned_bnb8", bits=8),
    }


def _fp_with_config(src: Path, dst: Path) -> Path:
    """Ordinary fp32 weights, but config.json still says the model is quantised (a half-done conversion)."""
    _copy_meta(src, dst, {"quant_method": "bitsandbytes", "load_in_4bit": True})
    shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    return dst


def run_refused(capsys, tmp_path: Path, argv: list, out: Path) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line about quantisation, and nothing written."""
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1, err
    assert "quantised" in err[0] and "dequantise" in err[0], err[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err[0]


def test_repair_refuses_gptq_pair(capsys, quantised, tmp_path):
    out = tmp_path / "out"
    line = run_refused(capsys, tmp_path, ["repair", "interpolate", "--aligned", quantised["aligned"],
                                          "--tuned", quantised["tuned"], "--out", out], out)
    assert "--aligned" in line and "config.json has quantization_config (quant_method=gptq)" in line


def test_repair_refuses_quantised_tuned_next_to_fp_aligned(capsys, tiny_family, quantised, tmp_path):
    out = tmp_path / "out"
    line = run_refused(capsys, tmp_path, ["repair", "interpolate", "--aligned", tiny_family["aligned"],
                                          "--tuned", quantised["tuned"], "--out", out], out)
    assert "--tuned" in line and "gptq" in line


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("tensors_only", "qweight' is int32 (packed GPTQ/AWQ weights)"),
        ("config_only", "config.json has quantization_config (quant_method=bitsandbytes)"),
        ("bnb4", "tensor 'model.layers.0.mlp.up_proj.weight' is uint8"),
        ("bnb8", "tensor 'model.layers.0.mlp.up_proj.weight' is int8"),
    ],
)
def test_repair_refuses_each_marker(capsys, tiny_family, quantised, tmp_path, kind, expected):
    out = tmp_path / "out"
    line = run_refused(capsys, tmp_path, ["repair", "task_arithmetic", "--aligned", tiny_family["aligned"],
                                          "--tuned", quantised[kind], "--out", out], out)
    assert expected in line, line


def test_lora_on_quantised_base_is_refused(capsys, quantised, tiny_lora_dir, tmp_path):
    out = tmp_path / "out"
    line = run_refused(capsys, tmp_path, ["repair", "interpolate", "--aligned", quantised["aligned"],
                                          "--tuned", tiny_lora_dir, "--out", out], out)
    assert "--aligned" in line


def test_diagnose_refuses(capsys, tiny_family, quantised, tmp_path):
    out = tmp_path / "diag"
    run_refused(capsys, tmp_path, ["diagnose", "--aligned", tiny_family["aligned"], "--tuned", quantised["tuned"],
                                   "--out", out, "--quiet"], out)


@pytest.fixture
def suite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "mini.jsonl"
    path.write_text("".join(json.dumps({"id": f"h{i}", "prompt": f"w{i} w{i + 1}", "kind": "harmful"}) + "\n"
                            for i in range(3)))
    return path


def test_audit_refuses_before_loading(capsys, quantised, suite, tmp_path, monkeypatch):
    import transformers

    def never(*args, **kwargs):  # the check must come from headers, not from a (slow, failing) model load
        raise AssertionError("from_pretrained called on a quantised model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    monkeypatch.setattr("realignkit.evaluation.backend_registry.weights_fingerprint", never)  # nor hash its weights first
    out = tmp_path / "audit"
    line = run_refused(capsys, tmp_path, ["audit", quantised["tuned"], "--suite", suite, "--no-cache",
                                          "--out", out], out)
    assert "gptq" in line


def test_audit_refuses_adapter_on_quantised_base(capsys, quantised, tiny_lora_dir, suite, tmp_path):
    out = tmp_path / "audit"
    line = run_refused(capsys, tmp_path, ["audit", tiny_lora_dir, "--aligned", quantised["aligned"], "--suite", suite,
                                          "--no-cache", "--out", out], out)
    assert "base model" in line


def test_sweep_refuses(capsys, tiny_family, quantised, suite, tmp_path):
    out = tmp_path / "sweep"
    line = run_refused(capsys, tmp_path, ["sweep", "--aligned", tiny_family["aligned"], "--tuned", quantised["bnb4"],
                                          "--suite", suite, "--methods", "interpolate", "--no-progress",
                                          "--out", out], out)
    assert "--tuned" in line and "bitsandbytes" in line


def test_normal_model_still_repairs(capsys, tiny_family, tmp_path):
    capsys.readouterr()
    code = main(["repair", "interpolate", "--aligned", str(tiny_family["aligned"]), "--tuned",
                 str(tiny_family["tuned"]), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_legit_integer_tensors_are_not_quantisation(tiny_family, tmp_path):
    """int64 position_ids buffers, bool masks and an int step counter pass; so does a config with a null entry."""
    model = tmp_path / "with_buffers"
    _copy_meta(tiny_family["tuned"], model, None)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "quantization_config": None}))
    state = load_file(str(tiny_family["tuned"] / "model.safetensors"))
    state["model.embed_positions.position_ids"] = torch.arange(64).unsqueeze(0)
    state["model.layers.0.self_attn.causal_mask"] = torch.ones(8, 8, dtype=torch.bool)
    state["model.num_batches_tracked"] = torch.tensor(3)
    save_file(state, str(model / "model.safetensors"), metadata={"format": "pt"})
    check_not_quantized(model, "model")
    source = ModelDirSource(model, role="tuned")
    assert source.dtype("model.embed_positions.position_ids") == torch.int64
    source.close()


@pytest.mark.parametrize(
    ("name", "dtype", "flagged"),
    [
        ("model.layers.0.self_attn.q_proj.qweight", "I32", True),
        ("model.layers.0.self_attn.q_proj.qzeros", "I32", True),
        ("model.layers.0.mlp.down_proj.W_q", "U8", True),
        ("model.layers.0.mlp.down_proj.weight_packed", "I32", True),
        ("model.layers.0.mlp.down_proj.weight_scale", "BF16", True),
        ("model.layers.0.mlp.down_proj.weight.quant_state.bitsandbytes__fp4", "U8", True),
        ("model.layers.0.mlp.down_proj.weight", torch.int8, True),
        ("model.layers.0.mlp.down_proj.weight", "F8_E4M3", False),  # fp8 alone: its scales or config say more
        ("model.layers.0.mlp.down_proj.weight", torch.bfloat16, False),
        ("model.embed_positions.position_ids", "I64", False),
        ("model.layers.0.attn.bias_mask", "BOOL", False),
        ("model.layers.0.mlp.scales", "F16", False),  # a lone `scales` is too generic to be a marker
    ],
)
def test_tensor_marker(name, dtype, flagged):
    assert (tensor_marker(name, dtype) is not None) == flagged


def test_config_marker_nested_and_compressed():
    assert config_marker({"text_config": {"quantization_config": {"quant_method": "awq"}}}) == \
        "quantization_config (quant_method=awq)"
    assert config_marker({"compression_config": {"format": "pack-quantized"}}) == \
        "compression_config (quant_method=pack-quantized)"
    assert config_marker({"quantization_config": {}, "hidden_size": 32}) is None


def test_check_not_quantized_is_one_line_bad_input(quantised):
    with pytest.raises(BadInputError) as info:
        check_not_quantized(quantised["tensors_only"], "--tuned x")
    assert "\n" not in str(info.value) and "qweight" in str(info.value)
