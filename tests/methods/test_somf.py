"""SOMF: fusion formula for a fixed mask, then end to end (full, LoRA factors, several --tuned) via run_repair/CLI."""

import json
import random

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
    params = {
        "steps": 20,
        "lr": 0.05,
        "final_mask": "threshold",
        "targets": "*self_attn*",
        "granularity": "entry",
    }
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


# ---------------------------------------------------------------- the mask decides, cheaply


def _harmful_rows(n, offset=0):
    """Like preference_rows, on other prompts: the same 'refusal' is chosen, a varying 'compliance' rejected."""
    return [{"prompt": f"w{10 + (i + offset) % 40} w{20 + (3 * (i + offset)) % 50} w{30 + (i + offset) % 20}",
             "chosen": "w50 w51 w52", "rejected": f"w{60 + (i + offset) % 30} w{70 + (i + offset) % 25} w61"}
            for i in range(n)]  # fmt: skip


def _margins(model_dir, rows):
    """Mean log p(chosen) − log p(rejected) per pair under a model dir."""
    from realignkit.calibration import PreferencePair
    from realignkit.calibration.mask_training import PreferenceData, sequence_logprobs
    from realignkit.calibration.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(model_dir)
    data = PreferenceData(load_tokenizer(model_dir), [PreferencePair(**r) for r in rows], 64)
    with torch.no_grad():
        logp = sequence_logprobs(model, data.batch(range(len(rows)), torch.device("cpu")), None)
    chosen, rejected = logp.chunk(2)
    return float((chosen - rejected).mean())


@pytest.fixture(scope="module")
def harmful_family(tmp_path_factory, tiny_family):
    """`tuned` = aligned fine-tuned to produce the rejected ('compliant') answers, plus random noise: a task
    vector that is clearly harmful on the preference data."""
    from fixtures.models import build_tiny_tokenizer
    from realignkit.calibration import PreferencePair
    from realignkit.calibration.mask_training import PreferenceData, sequence_logprobs
    from realignkit.calibration.models import load_causal_lm, load_tokenizer

    root = tmp_path_factory.mktemp("somf-harmful")
    torch.manual_seed(0)
    model = load_causal_lm(tiny_family["aligned"])
    data = PreferenceData(load_tokenizer(tiny_family["aligned"]),
                          [PreferencePair(**r) for r in _harmful_rows(48, offset=100)], 64)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        start = step * 8 % 48
        _, rejected = sequence_logprobs(
            model, data.batch(range(start, start + 8), torch.device("cpu")), None
        ).chunk(2)
        optimizer.zero_grad()
        (-rejected.mean()).backward()
        optimizer.step()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05 * (param.std() + 1e-3))
    model.save_pretrained(str(root / "tuned"))
    build_tiny_tokenizer(root / "tuned")
    return {"aligned": tiny_family["aligned"], "tuned": root / "tuned",
            "calibration": write_jsonl(root / "pref.jsonl", _harmful_rows(64)), "test": _harmful_rows(32, offset=500)}  # fmt: skip


def test_default_short_run_decides_and_repairs_a_harmful_task_vector(tmp_path, harmful_family):
    """20 steps at the defaults (lr 5/steps, threshold mask, DPO + chosen NLL): the mask moves far from 0.5, drops
    much of τ, and the fused model prefers the refusals again (the paper's lr 1e-3 leaves every logit within ±0.02
    and its expectation mask is the plain merge ±1 %)."""
    fam = harmful_family
    result = run_repair("somf", {"steps": 20}, tuned=[fam["tuned"]], aligned=fam["aligned"], out=tmp_path / "out",
                        calibration=fam["calibration"], options=QUIET)  # fmt: skip
    summary = result.extra["somf"]
    stats = summary["mask_stats"]
    assert summary["lr"] == pytest.approx(5 / 20) and summary["final_mask"] == "threshold"
    assert stats["decided_share"] > 0.2, stats  # sigmoid(logit) < 0.1 or > 0.9
    assert stats["logit_quantiles"]["q0.01"] < -2 and stats["logit_quantiles"]["q0.99"] > 2, stats
    assert 0.05 < stats["kept_share"] < 0.8, stats
    assert summary["delta_change_vs_plain_merge"] > 0.5, summary
    assert summary["eval_held_out"] and summary["eval_pairs"] == 32 and summary["train_pairs"] == 32
    assert summary["dpo_loss_final_mask"] < summary["dpo_loss_unmasked"] - 0.5, summary
    plain, final = summary["eval_plain_merge"], summary["eval_final_mask"]
    assert (
        summary["sft_weight"] == 1.0 and final["chosen_logp_per_token"] > plain["chosen_logp_per_token"] + 0.5
    )
    assert final["rejected_logp_per_token"] < plain["rejected_logp_per_token"]
    aligned, tuned, repaired = (
        _margins(p, fam["test"]) for p in (fam["aligned"], fam["tuned"], tmp_path / "out")
    )
    assert tuned < aligned - 5 and repaired > tuned + 5, (aligned, tuned, repaired)


def test_manifest_records_the_mask_statistics(tmp_path, harmful_family):
    fam = harmful_family
    run_repair("somf", {"steps": 4}, tuned=[fam["tuned"]], aligned=fam["aligned"], out=tmp_path / "out",
               calibration=fam["calibration"], options=QUIET)  # fmt: skip
    summary = json.loads((tmp_path / "out" / "realignkit.json").read_text())["somf"]
    stats = summary["mask_stats"]
    assert set(stats) >= {"mask_units", "decided_share", "below_0.1_share", "above_0.9_share", "kept_share",
                          "dropped_tensors", "probability_histogram", "logit_quantiles"}  # fmt: skip
    assert sum(stats["probability_histogram"].values()) == pytest.approx(1.0, abs=1e-4)
    assert list(stats["logit_quantiles"]) == [
        "q0",
        "q0.01",
        "q0.1",
        "q0.25",
        "q0.5",
        "q0.75",
        "q0.9",
        "q0.99",
        "q1",
    ]
    assert stats["decided_share"] == pytest.approx(stats["below_0.1_share"] + stats["above_0.9_share"])
    assert (
        summary["mask_kept_share"] == stats["kept_share"]
        and summary["mask_decided_share"] == stats["decided_share"]
    )
    for key in ("seconds_per_step", "setup_seconds", "train_seconds", "reference_pairs_scored", "lr"):
        assert summary[key] is not None, key


def test_row_granularity_is_the_full_default_and_uses_far_fewer_logits(tmp_path, harmful_family):
    """Full task vectors get one logit per output row: each output row of τ is kept whole (times 1/mean(m)) or
    dropped whole, with ~1/in of the logits of the per-entry mask."""
    fam = harmful_family
    result = run_repair("somf", {"steps": 10, "targets": "*self_attn*"}, tuned=[fam["tuned"]], aligned=fam["aligned"],
                        out=tmp_path / "out", calibration=fam["calibration"], options=QUIET)  # fmt: skip
    summary = result.extra["somf"]
    out, tuned, aligned = (_weights(p) for p in (tmp_path / "out", fam["tuned"], fam["aligned"]))
    assert summary["granularity"] == "row"
    assert summary["mask_units"] == sum(tuned[f"{m}.weight"].shape[0] for m in ATTN)
    assert summary["mask_units"] * 16 < summary["masked_entries"]
    mask = load_file(str(tmp_path / "out" / "somf_mask.safetensors"))
    assert all(v.shape[1] == 1 for v in mask.values())
    for module in ATTN:
        name = f"{module}.weight"
        tau, moved = tuned[name] - aligned[name], out[name] - aligned[name]
        kept = moved.abs().sum(dim=1) > 0
        scale = tau.shape[0] / int(kept.sum())  # 1 / mean(m) of the 0/1 row mask
        torch.testing.assert_close(moved[kept], tau[kept] * scale, rtol=1e-3, atol=1e-5)


def test_untrained_plain_loss_is_the_tuned_models_own(tmp_path, harmful_family):
    """Tensors outside the targets take part in training at their plain merge: the 'unmasked' DPO loss is the
    loss of the tuned model itself, even when only attention is masked."""
    from realignkit.calibration import PreferencePair, load_preference_jsonl
    from realignkit.calibration.mask_training import PreferenceData, dpo_loss, sequence_logprobs
    from realignkit.calibration.models import load_causal_lm, load_tokenizer

    fam = harmful_family
    result = run_repair("somf", {"steps": 0, "targets": "*self_attn*", "eval_pairs": 8}, tuned=[fam["tuned"]],
                        aligned=fam["aligned"], out=tmp_path / "out", calibration=fam["calibration"], options=QUIET)  # fmt: skip
    pairs = load_preference_jsonl(fam["calibration"])
    data = PreferenceData(load_tokenizer(fam["aligned"]), [PreferencePair(p.prompt, p.chosen, p.rejected) for p in pairs], 256)  # fmt: skip
    rows = list(range(len(pairs)))
    random.Random("somf-eval:0").shuffle(rows)  # the held-out split of somf._split_rows
    batch = data.batch(rows[:8], torch.device("cpu"))
    with torch.no_grad():
        pc, pr = sequence_logprobs(load_causal_lm(fam["tuned"]), batch, None).chunk(2)
        rc, rr = sequence_logprobs(load_causal_lm(fam["aligned"]), batch, None).chunk(2)
    expected = float(dpo_loss(pc, pr, rc, rr, 0.1))
    summary = result.extra["somf"]
    assert summary["unmasked_tensors_in_training"] > 0
    assert summary["dpo_loss_unmasked"] == pytest.approx(expected, rel=1e-4), (
        summary["dpo_loss_unmasked"],
        expected,
    )


def test_lora_row_granularity_masks_rank_components(tmp_path, tiny_family, tiny_lora_dir, preference_file):
    result = run_repair("somf", {"steps": 3, "granularity": "row"}, tuned=[tiny_lora_dir], aligned=tiny_family["aligned"],
                        out=tmp_path / "out", calibration=preference_file, options=QUIET)  # fmt: skip
    adapter = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    mask = load_file(str(tmp_path / "out" / "somf_mask.safetensors"))
    summary = result.extra["somf"]
    assert summary["mode"] == "lora_factors" and summary["granularity"] == "row"
    assert summary["mask_units"] == sum(t.shape[0] for t in adapter.values())  # r per A, out per B
    assert all(v.shape[1] == 1 for v in mask.values())


def test_every_somf_parameter_is_described():
    fields = get_method("somf").params.model_fields
    assert {"granularity", "init_logit", "temperature_final", "eval_pairs"} <= set(fields)
    missing = [name for name, info in fields.items() if not info.description]
    assert not missing, missing
