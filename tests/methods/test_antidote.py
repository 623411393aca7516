"""Antidote: formula on small tensors, then end to end (full, LoRA adapter, LoRA delta) through run_repair and the CLI."""

import json

import pytest
import torch
from safetensors.torch import load_file

from calibration.helpers import assert_repair_cli_rejects, prompt_response_rows, write_jsonl
from realignkit.calibration import PromptResponse, collect_input_norms, load_input_norms
from realignkit.calibration.models import load_calibration_model, load_tokenizer
from realignkit.cli import main
from realignkit.common.errors import BadInputError
from realignkit.methods.antidote import antidote_prune, top_alpha_row_mask, wanda_scores
from realignkit.methods.engine import RepairOptions, run_repair
from realignkit.methods.registry import get_method

QUIET = RepairOptions(show_progress=False)


def _expected_zero_positions(weight: torch.Tensor, norm: torch.Tensor, alpha: float) -> torch.Tensor:
    """Independent reference: sort each row's |W_ij|·‖X_j‖ descending and mark the first ⌊α·in⌋."""
    scores = weight.abs() * norm[None, :]
    k = int(weight.shape[1] * alpha)
    order = torch.argsort(scores, dim=1, descending=True)
    mask = torch.zeros_like(weight, dtype=torch.bool)
    for row in range(weight.shape[0]):
        mask[row, order[row, :k]] = True
    return mask


def _assert_pruned_exactly(
    result: torch.Tensor, weight: torch.Tensor, norm: torch.Tensor, alpha: float
) -> None:
    expected = _expected_zero_positions(weight, norm, alpha)
    assert torch.all(result[expected] == 0), "a top-alpha entry was not zeroed"
    assert torch.equal(result[~expected], weight[~expected]), "an entry outside the top-alpha changed"
    assert int(expected.sum()) == weight.shape[0] * int(weight.shape[1] * alpha)


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.25, 0.5])
def test_prune_formula_on_small_tensors(alpha):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 40, generator=gen)
    norm = torch.rand(40, generator=gen) + 0.1
    _assert_pruned_exactly(antidote_prune(weight, norm, alpha), weight, norm, alpha)


def test_scores_use_input_norms_not_just_magnitude():
    weight = torch.tensor([[1.0, 2.0, 3.0]])
    norm = torch.tensor([10.0, 1.0, 1.0])  # the small weight meets a big input
    assert torch.equal(wanda_scores(weight, norm), torch.tensor([[10.0, 2.0, 3.0]]))
    assert top_alpha_row_mask(wanda_scores(weight, norm), 0.34).tolist() == [[True, False, False]]
    with pytest.raises(BadInputError, match="another model"):
        wanda_scores(weight, torch.ones(4))


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1])
def test_alpha_outside_open_interval(alpha):
    with pytest.raises(BadInputError, match="alpha"):
        get_method("antidote").parse_params({"alpha": alpha})


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("antidote") / "cal.jsonl", prompt_response_rows(6))


def _norms(tuned, aligned, calibration_rows, names):
    model, _ = load_calibration_model(tuned, aligned)
    examples = [PromptResponse(r["prompt"], r["response"]) for r in calibration_rows]
    return collect_input_norms(model, load_tokenizer(tuned, aligned), examples, names)


def test_full_finetune_prunes_exactly_the_top_alpha_of_every_target_row(
    tmp_path, tiny_family, calibration_file
):
    alpha = 0.2
    result = run_repair("antidote", {"alpha": alpha}, tuned=[tiny_family["tuned"]], aligned=tiny_family["aligned"],
                        out=tmp_path / "out", calibration=calibration_file, options=QUIET)  # fmt: skip
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    tuned = load_file(str(tiny_family["tuned"] / "model.safetensors"))
    targets = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "k_proj", "v_proj")]
    norms = _norms(tiny_family["tuned"], None, prompt_response_rows(6), targets)
    saved = load_input_norms(tmp_path / "out")  # the statistics are published beside the repaired model
    assert all(torch.equal(saved[t], norms[t]) for t in targets)
    for module in targets:
        _assert_pruned_exactly(out[f"{module}.weight"], tuned[f"{module}.weight"], norms[module], alpha)
    for name, tensor in out.items():  # everything else is the tuned model, untouched
        if name.rsplit(".", 1)[0] not in targets:
            assert torch.equal(tensor, tuned[name]), name
    summary = result.extra["antidote"]
    assert summary["pruned_total"] == sum(tuned[f"{m}.weight"].shape[0] * int(32 * alpha) for m in targets)
    manifest = json.loads((tmp_path / "out" / "realignkit.json").read_text())
    assert manifest["antidote"]["modules"]["model.layers.0.self_attn.q_proj"]["pruned"] == 32 * int(
        32 * alpha
    )


def test_lora_adapter_mode_prunes_a_and_b(tmp_path, tiny_family, tiny_lora_dir, calibration_file):
    from peft import PeftConfig

    alpha = 0.3  # rank 4: ⌊0.3·4⌋ = 1 entry of each B row, ⌊0.3·32⌋ = 9 of each A row
    run_repair("antidote", {"alpha": alpha}, tuned=[tiny_lora_dir], aligned=tiny_family["aligned"],
               out=tmp_path / "out", calibration=calibration_file, options=QUIET)  # fmt: skip
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    aligned = load_file(str(tiny_family["aligned"] / "model.safetensors"))
    adapter = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    config = PeftConfig.from_pretrained(str(tiny_lora_dir))
    modules = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    names = [f"{m}.{piece}" for m in modules for piece in ("lora_A", "lora_B")]
    norms = _norms(tiny_lora_dir, tiny_family["aligned"], prompt_response_rows(6), names)
    for module in modules:
        a = adapter[f"base_model.model.{module}.lora_A.weight"]
        b = adapter[f"base_model.model.{module}.lora_B.weight"]
        a_pruned = antidote_prune(a, norms[f"{module}.lora_A"], alpha)
        b_pruned = antidote_prune(b, norms[f"{module}.lora_B"], alpha)
        _assert_pruned_exactly(a_pruned, a, norms[f"{module}.lora_A"], alpha)
        _assert_pruned_exactly(b_pruned, b, norms[f"{module}.lora_B"], alpha)
        expected = aligned[f"{module}.weight"] + b_pruned @ a_pruned * (config.lora_alpha / config.r)
        torch.testing.assert_close(out[f"{module}.weight"], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(
        out["model.layers.0.self_attn.k_proj.weight"], aligned["model.layers.0.self_attn.k_proj.weight"]
    )


def test_lora_delta_mode_prunes_the_merged_update(tmp_path, tiny_family, tiny_lora_dir, calibration_file):
    alpha = 0.1
    run_repair("antidote", {"alpha": alpha, "lora_mode": "delta", "targets": "q_proj"}, tuned=[tiny_lora_dir],
               aligned=tiny_family["aligned"], out=tmp_path / "out", calibration=calibration_file, options=QUIET)  # fmt: skip
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    aligned = load_file(str(tiny_family["aligned"] / "model.safetensors"))
    module = "model.layers.1.self_attn.q_proj"
    norm = _norms(tiny_lora_dir, tiny_family["aligned"], prompt_response_rows(6), [module])[module]
    adapter = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    a = adapter[f"base_model.model.{module}.lora_A.weight"]
    b = adapter[f"base_model.model.{module}.lora_B.weight"]
    full_delta = b @ a * 2.0  # lora_alpha 8 / r 4
    pruned = _expected_zero_positions(full_delta, norm, alpha)
    got = out[f"{module}.weight"] - aligned[f"{module}.weight"]
    assert torch.all(got[pruned] == 0)
    torch.testing.assert_close(got[~pruned], full_delta[~pruned], rtol=1e-4, atol=1e-5)
    v_name = "model.layers.1.self_attn.v_proj.weight"  # adapted but not targeted: full LoRA update kept
    assert not torch.equal(out[v_name], aligned[v_name])


def test_cli_full_and_lora(tmp_path, tiny_family, tiny_lora_dir, calibration_file):
    for tuned, tag in ((tiny_family["tuned"], "full"), (tiny_lora_dir, "lora")):
        code = main(["repair", "antidote", "--tuned", str(tuned), "--aligned", str(tiny_family["aligned"]),
                     "--calibration", str(calibration_file), "--set", "alpha=0.05", "--quiet",
                     "--out", str(tmp_path / tag)])  # fmt: skip
        assert code == 0
        manifest = json.loads((tmp_path / tag / "realignkit.json").read_text())
        assert manifest["antidote"]["mode"] == ("full" if tag == "full" else "lora_adapter")


@pytest.mark.parametrize(
    ("sets", "calibration_text", "message"),
    [
        (["alpha=1.5"], None, "alpha"),
        (["benign_calibration=nowhere.jsonl"], None, "is not a file"),
        (["targets=qkv_proj"], None, "matches no linear module"),
        ([], '{"prompt": "w1", "response": "w2"}\nnot json\n', "cal.jsonl line 2: not valid JSON"),
        ([], "", "is empty"),
        ([], '{"prompt": "w1"}\n', "missing field 'response'"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_family, calibration_file, capsys, sets,
                                                  calibration_text, message):  # fmt: skip
    calibration = calibration_file
    if calibration_text is not None:
        calibration = tmp_path / "cal.jsonl"
        calibration.write_text(calibration_text)
    assert_repair_cli_rejects("antidote", tiny_family, calibration, sets, message, tmp_path / "out", capsys)


def test_cli_missing_calibration(tmp_path, tiny_family, capsys):
    code = main(["repair", "antidote", "--tuned", str(tiny_family["tuned"]), "--aligned", str(tiny_family["aligned"]),
                 "--quiet", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "--calibration" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_saved_statistics_can_be_reused(tmp_path, tiny_family, tiny_lora_dir, calibration_file, kind):
    """--calibration calibration_stats.safetensors gives the same model as the JSONL run, without a forward pass."""
    from realignkit.calibration import save_input_norms

    tuned = tiny_family["tuned"] if kind == "full" else tiny_lora_dir
    aligned = tiny_family["aligned"]
    first = run_repair("antidote", {"alpha": 0.2}, tuned=[tuned], aligned=aligned, out=tmp_path / "jsonl",
                       calibration=calibration_file, options=QUIET)  # fmt: skip
    modules = list(first.extra["antidote"]["modules"])
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    save_input_norms(_norms(tuned, aligned, prompt_response_rows(6), modules), stats_dir)
    stats = stats_dir / "calibration_stats.safetensors"
    second = run_repair("antidote", {"alpha": 0.2}, tuned=[tuned], aligned=aligned, out=tmp_path / "reuse",
                        calibration=stats, options=QUIET)  # fmt: skip
    assert (
        second.extra["antidote"]["statistics_reused"]
        and second.extra["antidote"]["modules"] == first.extra["antidote"]["modules"]
    )
    got, want = _weights_of(tmp_path / "reuse"), _weights_of(tmp_path / "jsonl")
    assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(BadInputError, match="has no entry for"):
        run_repair("antidote", {"alpha": 0.2, "targets": "o_proj"} if kind == "full" else {"alpha": 0.2,
                   "lora_mode": "delta"}, tuned=[tuned], aligned=aligned, out=tmp_path / "bad",
                   calibration=stats, options=QUIET)  # fmt: skip
    assert not (tmp_path / "bad").exists()


def _weights_of(path):
    return load_file(str(path / "model.safetensors"))


# ---------------------------------------------------------------- massive-activation guard (protect_outliers)


def _one_massive_feature(seed: int = 0, index: int = 3, in_features: int = 20):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(8, in_features, generator=gen)
    weight = weight.sign() * (weight.abs() + 0.5)  # no near-zero weight: the huge norm wins every row
    norm = torch.rand(in_features, generator=gen) + 0.5
    norm[index] = 1000.0  # one input feature with a huge norm, like a massive activation
    return weight, norm


def test_guard_never_prunes_a_protected_feature_and_takes_the_next_best_instead():
    weight, norm = _one_massive_feature()
    alpha, k = 0.2, int(20 * 0.2)
    plain = antidote_prune(weight, norm, alpha)
    assert torch.all(plain[:, 3] == 0), "without the guard the huge-norm feature is pruned in every row"
    guarded = antidote_prune(weight, norm, alpha, protect_outliers=10)
    assert torch.equal(guarded[:, 3], weight[:, 3]), "a protected feature was pruned"
    others = [j for j in range(20) if j != 3]
    # the same number of entries per row goes, chosen by the plain formula among the other features
    expected = weight.clone()
    expected[:, others] = weight[:, others].masked_fill(
        _expected_zero_positions(weight[:, others], norm[others], k / len(others) + 1e-9), 0.0
    )
    assert torch.equal(guarded, expected)
    assert int((guarded == 0).sum(dim=1).min()) == k


def test_guard_disabled_is_exactly_the_paper_formula():
    weight, norm = _one_massive_feature(seed=1)
    for alpha in (0.05, 0.2, 0.5):
        _assert_pruned_exactly(antidote_prune(weight, norm, alpha, protect_outliers=0), weight, norm, alpha)
    # a threshold above every ratio protects nothing either
    torch.testing.assert_close(
        antidote_prune(weight, norm, 0.2, protect_outliers=1e6), antidote_prune(weight, norm, 0.2)
    )


def test_top_alpha_mask_with_every_feature_protected_prunes_nothing():
    scores = torch.rand(4, 5)
    assert not top_alpha_row_mask(scores, 0.4, torch.arange(5)).any()
    assert int(top_alpha_row_mask(scores, 0.8, torch.tensor([0, 1, 2])).sum(dim=1).max()) == 2


@pytest.fixture(scope="module")
def tuned_with_massive_feature(tmp_path_factory, tiny_family):
    """`tuned` with input feature 5 of layer 0's attention scaled 60x by its RMSNorm weight: a massive activation."""
    import shutil

    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("massive") / "tuned"
    shutil.copytree(tiny_family["tuned"], path)
    state = load_file(str(path / "model.safetensors"))
    state["model.layers.0.input_layernorm.weight"][5] *= 60.0
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def test_manifest_lists_protected_features_and_the_output_keeps_them(tmp_path, tiny_family,
                                                                     tuned_with_massive_feature, calibration_file):  # fmt: skip
    tuned = load_file(str(tuned_with_massive_feature / "model.safetensors"))
    runs = {}
    for k in (10, 0):
        out = tmp_path / f"k{k}"
        runs[k] = run_repair("antidote", {"alpha": 0.2, "protect_outliers": k}, tuned=[tuned_with_massive_feature],
                             aligned=tiny_family["aligned"], out=out, calibration=calibration_file, options=QUIET)  # fmt: skip
        runs[k] = (
            json.loads((out / "realignkit.json").read_text())["antidote"],
            load_file(str(out / "model.safetensors")),
        )
    manifest, weights = runs[10]
    assert manifest["protect_outliers"] == 10
    layer0 = [f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]
    assert manifest["protected_features"] == {m: [5] for m in layer0}  # layer 1 has no outlier
    for module in layer0:
        name = f"{module}.weight"
        assert torch.equal(weights[name][:, 5], tuned[name][:, 5])
        assert int((weights[name] == 0).sum()) == tuned[name].shape[0] * int(
            32 * 0.2
        )  # same budget, elsewhere
        assert float((runs[0][1][name][:, 5] == 0).float().mean()) > 0.8  # the plain formula zeroes it
    assert runs[0][0]["protected_features"] == {} and runs[0][0]["protect_outliers"] == 0


def test_full_delta_mode_prunes_the_update_back_to_aligned(tmp_path, tiny_family, calibration_file):
    alpha = 0.25
    result = run_repair("antidote", {"alpha": alpha, "full_mode": "delta"}, tuned=[tiny_family["tuned"]],
                        aligned=tiny_family["aligned"], out=tmp_path / "out", calibration=calibration_file,
                        options=QUIET)  # fmt: skip
    assert result.extra["antidote"]["mode"] == "full_delta"
    out, tuned = _weights_of(tmp_path / "out"), _weights_of(tiny_family["tuned"])
    aligned = _weights_of(tiny_family["aligned"])
    targets = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "k_proj", "v_proj")]
    norms = _norms(tiny_family["tuned"], None, prompt_response_rows(6), targets)
    for module in targets:
        name = f"{module}.weight"
        tau = tuned[name] - aligned[name]
        pruned = _expected_zero_positions(tau, norms[module], alpha)
        assert torch.equal(out[name][pruned], aligned[name][pruned])  # pruned entries of τ: back to aligned
        assert torch.equal(out[name][~pruned], tuned[name][~pruned])
    assert torch.equal(out["model.layers.0.mlp.up_proj.weight"], tuned["model.layers.0.mlp.up_proj.weight"])


def test_benign_set_difference_keeps_what_matters_for_benign_text():
    from realignkit.methods.antidote import prune_mask

    weight, norm = _one_massive_feature(seed=2)
    benign = norm.clone()  # the massive feature is just as big on benign text ...
    benign[7] = 500.0  # ... and feature 7 matters for benign text only
    harmful_only = prune_mask(weight, norm, 0.2)
    both = prune_mask(weight, norm, 0.2, benign_norm=benign, benign_keep=0.1)
    assert not both[:, 3].any() and not both[:, 7].any()
    assert torch.equal(both, harmful_only & ~top_alpha_row_mask(weight.abs() * benign, 0.1))


def test_benign_calibration_end_to_end(tmp_path, tiny_family, calibration_file):
    benign = write_jsonl(tmp_path / "benign.jsonl", [{"prompt": "w40 w41", "response": "w42 w43 w44"},
                                                     {"prompt": "w50", "response": "w51 w52 w53 w54"}])  # fmt: skip
    alpha, keep = 0.25, 0.1
    result = run_repair("antidote", {"alpha": alpha, "benign_calibration": str(benign), "benign_keep": keep,
                                     "protect_outliers": 0}, tuned=[tiny_family["tuned"]],
                        aligned=tiny_family["aligned"], out=tmp_path / "out", calibration=calibration_file,
                        options=QUIET)  # fmt: skip
    summary = result.extra["antidote"]
    assert summary["benign"]["examples"] == 2 and summary["benign"]["keep"] == keep
    module = "model.layers.1.self_attn.q_proj"
    harmful = _norms(tiny_family["tuned"], None, prompt_response_rows(6), [module])[module]
    benign_norm = load_input_norms(tmp_path / "out" / "calibration_stats_benign.safetensors")[module]
    tuned = _weights_of(tiny_family["tuned"])[f"{module}.weight"]
    expected = _expected_zero_positions(tuned, harmful, alpha) & ~_expected_zero_positions(
        tuned, benign_norm, keep
    )
    out = _weights_of(tmp_path / "out")[f"{module}.weight"]
    assert torch.equal(out, tuned.masked_fill(expected, 0.0))
    assert summary["modules"][module]["pruned"] == int(expected.sum()) < 32 * int(32 * alpha)
