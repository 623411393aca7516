"""LoRA adapters as `tuned`: ΔW = B·A·scaling with every PEFT option, and mismatch detection."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.models import build_lora_adapter, build_tiny_llama, peft_merged_state
from realignkit.checkpoints import open_source
from realignkit.common import BadInputError


def _compare_with_peft(aligned_dir, adapter_dir):
    aligned = open_source(aligned_dir, role="aligned")
    adapter = open_source(adapter_dir, role="tuned", aligned=aligned)
    reference = peft_merged_state(aligned_dir, adapter_dir)
    for name in aligned.names():
        torch.testing.assert_close(adapter.get(name), reference[name], rtol=1e-5, atol=1e-6)
    return adapter


def test_rslora_rank_and_alpha_patterns_match_peft(tiny_family, tmp_path):
    adapter_dir = build_lora_adapter(
        tiny_family["aligned"], tmp_path / "a", seed=1, r=4, lora_alpha=8, use_rslora=True,
        target_modules=("q_proj", "v_proj", "down_proj"),
        rank_pattern={"v_proj": 2}, alpha_pattern={"down_proj": 3},
    )
    adapter = _compare_with_peft(tiny_family["aligned"], adapter_dir)
    factors = adapter.lora_factors("model.layers.0.self_attn.v_proj.weight")
    assert factors.a.shape[0] == 2 and factors.scaling == pytest.approx(8 / 2**0.5)
    assert adapter.lora_factors("model.layers.1.mlp.down_proj.weight").scaling == pytest.approx(3 / 2)


def test_regex_target_modules_match_peft(tiny_family, tmp_path):
    adapter_dir = build_lora_adapter(tiny_family["aligned"], tmp_path / "a", seed=2,
                                     target_modules=r".*\.layers\.1\.self_attn\.(k_proj|o_proj)")
    adapter = _compare_with_peft(tiny_family["aligned"], adapter_dir)
    assert adapter.adapted_names() == [
        "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.o_proj.weight"
    ]


def test_default_adapter_name_in_keys(tiny_family, tiny_lora_dir, tmp_path):
    state = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    renamed = {k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
               for k, v in state.items()}
    (tmp_path / "a").mkdir()
    save_file(renamed, str(tmp_path / "a" / "adapter_model.safetensors"))
    (tmp_path / "a" / "adapter_config.json").write_text((tiny_lora_dir / "adapter_config.json").read_text())
    plain = open_source(tiny_lora_dir, role="tuned", aligned=open_source(tiny_family["aligned"], role="aligned"))
    aligned = open_source(tiny_family["aligned"], role="aligned")
    other = open_source(tmp_path / "a", role="tuned", aligned=aligned)
    name = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(other.delta(name), plain.delta(name))


def test_fan_in_fan_out_transposes_delta(tmp_path):
    (tmp_path / "base").mkdir()
    weight = torch.randn(8, 12)  # Conv1D layout: [in, out]
    save_file({"h.0.attn.c_attn.weight": weight}, str(tmp_path / "base" / "model.safetensors"))
    a, b = torch.randn(2, 8), torch.randn(12, 2)  # A [r, in], B [out, r]
    (tmp_path / "ad").mkdir()
    save_file({"base_model.model.h.0.attn.c_attn.lora_A.weight": a,
               "base_model.model.h.0.attn.c_attn.lora_B.weight": b}, str(tmp_path / "ad" / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "fan_in_fan_out": True, "target_modules": ["c_attn"]}
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps(config))
    adapter = open_source(tmp_path / "ad", role="tuned", aligned=open_source(tmp_path / "base", role="aligned"))
    torch.testing.assert_close(adapter.get("h.0.attn.c_attn.weight"), weight + (b @ a).T * 2.0)


def test_adapter_for_another_base_is_refused(tiny_family, tmp_path):
    other = build_tiny_llama(tmp_path / "other", seed=9, config_overrides={"hidden_size": 48})
    adapter_dir = build_lora_adapter(other, tmp_path / "a", seed=3)
    aligned = open_source(tiny_family["aligned"], role="aligned")
    with pytest.raises(BadInputError, match="adapter does not match aligned"):
        open_source(adapter_dir, role="tuned", aligned=aligned)


def test_adapter_naming_unknown_module_is_refused(tiny_family, tiny_lora_dir, tmp_path):
    state = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    renamed = {k.replace("layers.1.", "layers.7."): v for k, v in state.items()}
    (tmp_path / "a").mkdir()
    save_file(renamed, str(tmp_path / "a" / "adapter_model.safetensors"))
    (tmp_path / "a" / "adapter_config.json").write_text((tiny_lora_dir / "adapter_config.json").read_text())
    with pytest.raises(BadInputError, match="adapter does not match aligned"):
        open_source(tmp_path / "a", role="tuned", aligned=open_source(tiny_family["aligned"], role="aligned"))
