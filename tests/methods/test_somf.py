"""SOMF: fusion formula for a fixed mask, then end to end (full, LoRA factors, several --tuned) via run_repair/CLI."""

import json

import pytest
import torch
from safetensors.torch import load_file

from calibration.helpers import assert_repair_cli_rejects, preference_rows, write_jsonl
from realignkit.cli import main
from realignkit.methods.engine import RepairOptions, run_repair
from realignkit.methods.registry import get_method
from realignkit.methods.somf import build_merge, somf_fuse

QUIET = RepairOptions(show_progress=False)
ATTN = [f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qkvo"]


def _random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_fusion_formula_for_a_fixed_mask():
    aligned, tau = _random(5, 6, seed=0), _random(5, 6, seed=1)
    mask = torch.rand(5, 6, generator=torch.Generator().manual_seed(2))
    params = get_method("somf").parse_params({})
    fused = somf_fuse(aligned, [tau], mask, build_merge(params, 1))
    torch.testing.assert_close(fused, aligned + tau * mask / mask.mean())
    binary = (mask > 0.5).float()
    fused = somf_fuse(aligned, [tau], binary, build_merge(params, 1))
    kept = binary.bool()
    torch.testing.assert_close(fused[kept], (aligned + tau / binary.mean())[kept])
    assert torch.equal(fused[~kept], aligned[~kept])


@pytest.mark.parametrize(("merge", "extra"), [("task_arithmetic", {"scale": 0.3}), ("ties", {"density": 0.5}),
                                              ("dare", {"density": 0.5, "seed": 3})])  # fmt: skip
def test_several_task_vectors_share_one_mask_then_merge(merge, extra):
    aligned = _random(4, 8, seed=0)
    taus = [_random(4, 8, seed=1), _random(4, 8, seed=2)]
    mask = torch.rand(4, 8, generator=torch.Generator().manual_seed(3))
    params = get_method("somf").parse_params({"merge": merge, **extra})
    fused = somf_fuse(aligned, taus, mask, build_merge(params, 2))
    spec = get_method(merge)
    merge_params = spec.parse_params({"scale": 0.3, **extra})
    masked = [tau * mask / mask.mean() for tau in taus]
    expected = spec.fn(aligned, [aligned + m for m in masked], merge_params, name="")
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def preference_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("somf") / "pref.jsonl", preference_rows(8))


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_zero_steps_expectation_mask_reproduces_tuned(tmp_path, tiny_family, preference_file):
    """Logits 0 -> m = 0.5 everywhere -> τ ⊙ m / mean(m) = τ: the output is the tuned model."""
    run_repair("somf", {"steps": 0}, tuned=[tiny_family["tuned"]], aligned=tiny_family["aligned"],
               out=tmp_path / "out", calibration=preference_file, options=QUIET)  # fmt: skip
    out, tuned = _weights(tmp_path / "out"), _weights(tiny_family["tuned"])
    for name in out:
        torch.testing.assert_close(out[name], tuned[name], rtol=1e-5, atol=1e-6)


def test_trained_threshold_mask_follows_the_formula(tmp_path, tiny_family, preference_file):
    """Binary final mask: each target entry is either θ_aligned or θ_aligned + τ / mean(m), one mean per tensor."""
    params = {"steps": 20, "lr": 0.05, "final_mask": "threshold", "targets": "*self_attn*"}
    result = run_repair("somf", params, tuned=[tiny_family["tuned"]], aligned=tiny_family["aligned"],
                        out=tmp_path / "out", calibration=preference_file, options=QUIET)  # fmt: skip
    out, tuned, aligned = (
        _weights(tmp_path / "out"),
        _weights(tiny_family["tuned"]),
        _weights(tiny_family["aligned"]),
    )
    for module in ATTN:
        name = f"{module}.weight"
        tau = tuned[name] - aligned[name]
        dropped = out[name] == aligned[name]
        assert 0 < int(dropped.sum()) < tau.numel(), name  # the mask really selects
        ratio = (out[name] - aligned[name])[~dropped] / tau[
            ~dropped
        ]  # = 1 / mean(m), the same for the tensor
        expected = tau.numel() / int((~dropped).sum())
        torch.testing.assert_close(ratio, torch.full_like(ratio, expected), rtol=1e-3, atol=1e-3)
    for name in ("model.layers.0.mlp.up_proj.weight", "lm_head.weight"):  # not targeted: the full τ
        torch.testing.assert_close(out[name], tuned[name])
    summary = result.extra["somf"]
    assert summary["targets"] == 8 and summary["masked_entries"] == sum(
        tuned[f"{m}.weight"].numel() for m in ATTN
    )
    assert summary["mask_fp32_bytes"] == 4 * summary["masked_entries"]
    mask = load_file(str(tmp_path / "out" / "somf_mask.safetensors"))  # the binary mask is published too
    assert summary["mask_file"] == "somf_mask.safetensors"
    assert sum(v.numel() for v in mask.values()) == summary["masked_entries"]
    assert all(bool(((v == 0) | (v == 1)).all()) for v in mask.values())


def test_training_lowers_dpo_loss_end_to_end(tmp_path, tiny_family, preference_file):
    result = run_repair("somf", {"steps": 25, "lr": 0.05}, tuned=[tiny_family["tuned"]],
                        aligned=tiny_family["aligned"], out=tmp_path / "out", calibration=preference_file,
                        options=QUIET)  # fmt: skip
    summary = result.extra["somf"]
    assert summary["dpo_loss_final_mask"] < summary["dpo_loss_unmasked"] - 1e-3, summary


def test_lora_factor_masks(tmp_path, tiny_family, tiny_lora_dir, preference_file):
    from peft import PeftConfig

    result = run_repair("somf", {"steps": 0}, tuned=[tiny_lora_dir], aligned=tiny_family["aligned"],
                        out=tmp_path / "out", calibration=preference_file, options=QUIET)  # fmt: skip
    assert result.extra["somf"]["mode"] == "lora_factors"
    out, aligned = _weights(tmp_path / "out"), _weights(tiny_family["aligned"])
    adapter = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    config = PeftConfig.from_pretrained(str(tiny_lora_dir))
    for module in [f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qv"]:
        a = adapter[f"base_model.model.{module}.lora_A.weight"]
        b = adapter[f"base_model.model.{module}.lora_B.weight"]
        expected = aligned[f"{module}.weight"] + b @ a * (config.lora_alpha / config.r)
        torch.testing.assert_close(out[f"{module}.weight"], expected, rtol=1e-5, atol=1e-6)
    assert result.extra["somf"]["masked_entries"] == sum(t.numel() for t in adapter.values())


def test_lora_trained_threshold_masks_a_and_b(tmp_path, tiny_family, tiny_lora_dir, preference_file):
    code = main(["repair", "somf", "--tuned", str(tiny_lora_dir), "--aligned", str(tiny_family["aligned"]),
                 "--calibration", str(preference_file), "--set", "steps=10", "--set", "lr=0.05",
                 "--set", "final_mask=threshold", "--quiet", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "realignkit.json").read_text())
    assert manifest["somf"]["mode"] == "lora_factors" and 0 < manifest["somf"]["mask_mean"] < 1


def test_several_tuned_match_the_registered_merge_with_an_untrained_mask(
    tmp_path, tiny_family, preference_file
):
    tuned = [tiny_family["tuned"], tiny_family["tuned2"]]
    run_repair("somf", {"steps": 0, "merge": "ties", "density": 0.5, "scale": 0.7}, tuned=tuned,
               aligned=tiny_family["aligned"], out=tmp_path / "somf", calibration=preference_file, options=QUIET)  # fmt: skip
    run_repair("ties", {"density": 0.5, "scale": 0.7}, tuned=tuned, aligned=tiny_family["aligned"],
               out=tmp_path / "ties", options=QUIET)  # fmt: skip
    somf_out, ties_out = _weights(tmp_path / "somf"), _weights(tmp_path / "ties")
    for name in ties_out:
        torch.testing.assert_close(somf_out[name], ties_out[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("sets", "text", "message"),
    [
        ([], '{"prompt": "w1", "response": "w2"}\n', "needs 'chosen' and 'rejected'"),
        (
            [],
            '{"prompt": "w1", "chosen": "w2", "rejected": "w3"}\n[1]\n',
            "pref.jsonl line 2: expected a JSON object",
        ),
        (["targets=qkv_proj"], None, "matches no linear module"),
        (["merge=average"], None, "merge"),
        (["steps=-1"], None, "steps"),
    ],
)
def test_cli_bad_input(tmp_path, tiny_family, preference_file, capsys, sets, text, message):
    calibration = preference_file
    if text is not None:
        calibration = tmp_path / "pref.jsonl"
        calibration.write_text(text)
    assert_repair_cli_rejects("somf", tiny_family, calibration, sets, message, tmp_path / "out", capsys)


@pytest.mark.parametrize("merge", ["task_arithmetic", "ties", "dare"])
def test_registered_merges_pass_gradients_to_the_mask(merge):
    """Training differentiates through the merge: the engine's merge functions must keep the autograd graph."""
    aligned = _random(4, 8, seed=0)
    taus = [_random(4, 8, seed=1), _random(4, 8, seed=2)]
    mask = torch.full((4, 8), 0.5, requires_grad=True)
    params = get_method("somf").parse_params({"merge": merge, "density": 0.5})
    fused = somf_fuse(aligned, taus, mask, build_merge(params, 2))
    (fused * _random(4, 8, seed=5)).sum().backward()
    assert mask.grad is not None and float(mask.grad.abs().sum()) > 0
