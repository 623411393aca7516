"""End to end through the engine: outputs equal the formula on real checkpoint layouts, and load and generate."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fixtures.models import peft_merged_state
from realignkit.checkpoints import open_source
from realignkit.methods.engine import RepairOptions, run_repair

QUIET = RepairOptions(show_progress=False)


def load_dir(path):
    """All tensors of a (possibly sharded) safetensors model dir."""
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


def test_task_arithmetic_two_tuned_multi_shard(tiny_family, tiny_llama_sharded_dir, tmp_path):
    out = tmp_path / "ta"
    opts = RepairOptions(show_progress=False, max_shard_bytes=30_000)
    run_repair("task_arithmetic", {"scale": 0.5, "weights": [1.0, 0.5]}, aligned=tiny_family["aligned"],
               tuned=[tiny_llama_sharded_dir, tiny_family["tuned2"]], out=out, options=opts)
    assert (out / "model.safetensors.index.json").is_file()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    a, t1, t2, got = (load_dir(p) for p in (tiny_family["aligned"], tiny_family["tuned"], tiny_family["tuned2"], out))
    assert set(got) == set(t1)
    for name in a:
        expected = a[name] + 0.5 * ((t1[name] - a[name]) + 0.5 * (t2[name] - a[name]))
        torch.testing.assert_close(got[name], expected, rtol=1e-5, atol=1e-6)


def test_lora_adapter_as_tuned_matches_peft_merge(tiny_family, tiny_lora_dir, tmp_path):
    out = tmp_path / "interp"
    run_repair("interpolate", {"alpha": 1.0}, aligned=tiny_family["aligned"], tuned=[tiny_lora_dir], out=out,
               options=QUIET)
    reference = peft_merged_state(tiny_family["aligned"], tiny_lora_dir)
    got = load_dir(out)
    changed = 0
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-5, atol=1e-6)
        changed += "q_proj" in name or "v_proj" in name
    assert changed == 4
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()  # copied from aligned


def test_vlm_named_tuned_keeps_names_and_passes_vision_through(tiny_family, tiny_vlm_tuned_dir, tmp_path):
    out = tmp_path / "vlm"
    run_repair("interpolate", {"alpha": 0.25}, aligned=tiny_family["aligned"], tuned=[tiny_vlm_tuned_dir],
               out=out, options=QUIET)
    a, t, got = load_dir(tiny_family["aligned"]), load_dir(tiny_vlm_tuned_dir), load_dir(out)
    assert set(got) == set(t)
    torch.testing.assert_close(got["vision_tower.patch_embed.weight"], t["vision_tower.patch_embed.weight"])
    name = "model.layers.1.mlp.down_proj.weight"
    torch.testing.assert_close(got[f"language_model.{name}"], 0.75 * a[name] + 0.25 * t[f"language_model.{name}"])
    manifest = json.loads((out / "realignkit.json").read_text())
    assert manifest["passthrough_tensors"] == 2


def test_bf16_inputs_give_bf16_output_computed_in_fp32(tiny_bf16_family, tmp_path):
    out = tmp_path / "resta"
    run_repair("resta", {"beta": 0.5}, aligned=tiny_bf16_family["aligned"], tuned=[tiny_bf16_family["tuned"]],
               unaligned=tiny_bf16_family["base"], out=out, options=QUIET)
    a, t, b = (load_dir(tiny_bf16_family[r]) for r in ("aligned", "tuned", "base"))
    got = load_dir(out)
    for name in a:
        assert got[name].dtype == torch.bfloat16
        expected = (t[name].float() + 0.5 * (a[name].float() - b[name].float())).to(torch.bfloat16)
        assert torch.equal(got[name], expected)
    manifest = json.loads((out / "realignkit.json").read_text())
    assert manifest["method"] == "resta" and manifest["parameters"]["beta"] == 0.5
    assert set(manifest["inputs"]) == {"aligned", "tuned[0]", "unaligned"}
    assert manifest["inputs"]["aligned"]["fingerprint"].startswith("sha256")


def test_dtype_override(tiny_family, tiny_vlm_tuned_dir, tmp_path):
    out = tmp_path / "half"
    run_repair("ties", {"density": 0.5}, aligned=tiny_family["aligned"], tuned=[tiny_vlm_tuned_dir], out=out,
               options=RepairOptions(dtype="bfloat16", show_progress=False))
    assert {t.dtype for t in load_dir(out).values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text()).get("dtype", "bfloat16") == "bfloat16"


@pytest.mark.parametrize("method,params", [("ties", {"density": 0.3}), ("safe_lora", {"num_layers": 2})])
def test_repaired_model_loads_and_generates(tiny_family, tiny_lora_dir, tmp_path, method, params):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / method
    tuned = [tiny_lora_dir] if method == "safe_lora" else [tiny_family["tuned"], tiny_family["tuned2"]]
    run_repair(method, params, aligned=tiny_family["aligned"], tuned=tuned, unaligned=tiny_family["base"], out=out,
               options=QUIET)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    ids = tokenizer("w1 w2 w3", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == ids.shape[1] + 4 or int(generated[0, -1]) == 2


def test_safe_lora_on_adapter_projects_lowest_similarity_modules(tiny_family, tiny_lora_dir, tmp_path):
    from realignkit.methods.safe_lora import safety_projection

    out = tmp_path / "safe"
    run_repair("safe_lora", {"num_layers": 2}, aligned=tiny_family["aligned"], tuned=[tiny_lora_dir],
               unaligned=tiny_family["base"], out=out, options=QUIET)
    info = json.loads((out / "realignkit.json").read_text())["safe_lora"]
    sims = info["similarities"]
    assert len(sims) == 4 and len(info["projected"]) == 2
    assert max(sims[n] for n in info["projected"]) <= min(s for n, s in sims.items() if n not in info["projected"])
    a, b, got = load_dir(tiny_family["aligned"]), load_dir(tiny_family["base"]), load_dir(out)
    merged = peft_merged_state(tiny_family["aligned"], tiny_lora_dir)
    for name in sims:
        delta = merged[name] - a[name]
        expected = a[name] + safety_projection(a[name] - b[name], delta) if name in info["projected"] else merged[name]
        torch.testing.assert_close(got[name], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fraction,count", [(0.25, 1), (0.3, 2), (1.0, 4)])
def test_safe_lora_fraction_projects_that_share_lowest_first(tiny_family, tiny_lora_dir, tmp_path, fraction, count):
    out = tmp_path / "safe"
    run_repair("safe_lora", {"fraction": fraction}, aligned=tiny_family["aligned"], tuned=[tiny_lora_dir],
               unaligned=tiny_family["base"], out=out, options=QUIET)
    info = json.loads((out / "realignkit.json").read_text())["safe_lora"]
    sims = info["similarities"]
    assert info["rule"] == {"fraction": fraction} and len(info["projected"]) == count  # ceil(fraction x 4 modules)
    assert max(sims[n] for n in info["projected"]) <= min((s for n, s in sims.items() if n not in info["projected"]),
                                                         default=1.0)


def test_safe_lora_full_finetune_threshold_defaults_to_q_v(tiny_family, tmp_path):
    out = tmp_path / "safe_full"
    run_repair("safe_lora", {"threshold": 1.0}, aligned=tiny_family["aligned"], tuned=[tiny_family["tuned"]],
               unaligned=tiny_family["base"], out=out, options=QUIET)
    info = json.loads((out / "realignkit.json").read_text())["safe_lora"]
    assert sorted(info["similarities"]) == sorted(
        f"model.layers.{i}.self_attn.{m}.weight" for i in range(2) for m in ("q_proj", "v_proj")
    )
    assert len(info["projected"]) == 4  # s < 1 for every non-trivial update
    got, t = load_dir(out), load_dir(tiny_family["tuned"])
    torch.testing.assert_close(got["model.layers.0.mlp.up_proj.weight"], t["model.layers.0.mlp.up_proj.weight"])
    assert not torch.allclose(got["model.layers.0.self_attn.q_proj.weight"], t["model.layers.0.self_attn.q_proj.weight"])


@pytest.mark.parametrize(
    "method,params,tuned_key",
    [
        ("task_arithmetic", {"scale": 0.7}, "full"),
        ("ties", {"density": 0.3, "weights": [0.6, 0.4]}, "full"),
        ("ties", {"density": 0.3}, "bf16"),  # bf16 task vectors tie a lot at the top-k boundary
        ("interpolate", {"alpha": 0.4}, "lora"),
        ("resta", {"beta": 2.0}, "vlm"),
    ],
)
def test_row_blocks_give_the_same_output_as_whole_tensors(
    tiny_family, tiny_bf16_family, tiny_lora_dir, tiny_vlm_tuned_dir, tmp_path, method, params, tuned_key
):
    tuned = {"full": [tiny_family["tuned"], tiny_family["tuned2"]], "lora": [tiny_lora_dir],
             "vlm": [tiny_vlm_tuned_dir], "bf16": [tiny_bf16_family["tuned"], tiny_bf16_family["tuned2"]]}[tuned_key]
    aligned = tiny_bf16_family["aligned"] if tuned_key == "bf16" else tiny_family["aligned"]
    outputs = {}
    for block in (1 << 20, 100):  # 100 entries: every 2-D tensor is split into blocks of 1-3 rows
        out = tmp_path / f"block{block}"
        run_repair(method, params, aligned=aligned, tuned=tuned, unaligned=tiny_family["base"], out=out,
                   options=RepairOptions(show_progress=False, block_elements=block, max_shard_bytes=50_000))
        outputs[block] = load_dir(out)
    assert outputs[100].keys() == outputs[1 << 20].keys()
    lora = open_source(tiny_lora_dir, role="tuned", aligned=open_source(aligned, role="aligned"))
    for name, whole in outputs[1 << 20].items():
        factors = lora.lora_factors(name) if tuned_key == "lora" else None  # the only matmul in these formulas
        assert_equal_up_to_rounding(outputs[100][name], whole, factors, name)


def assert_equal_up_to_rounding(blocked, whole, factors, name):
    """Row blocks and whole tensors may take different BLAS kernels, so their bits may differ; the gap must stay
    within what fp32 rounding allows (a bug, e.g. a wrong row offset, is orders of magnitude larger).

    Elementwise formulas: each path rounds once more when casting to the output dtype, so 2 ulps of the output
    dtype plus a few fp32 ulps of the tensor's scale. LoRA delta s·B·A over rank r: the standard dot-product bound
    |fl(B·A) − B·A| ≤ γ_r·|B|·|A| with γ_r = r·u / (1 − r·u), u = 2⁻²⁴, for each path, hence twice that.
    """
    u32 = torch.finfo(torch.float32).eps / 2
    want = whole.float()
    bound = 2 * torch.finfo(whole.dtype).eps * want.abs() + 8 * u32 * want.abs().max()
    if factors is not None:
        rank = factors.a.shape[0]
        gamma = rank * u32 / (1 - rank * u32)
        magnitude = factors.b.float().abs() @ factors.a.float().abs()  # [out, in]: Σ_k |B_ik|·|A_kj|
        bound = bound + 2 * gamma * factors.scaling * (magnitude.T if factors.transpose else magnitude)
    gap = (blocked.float() - want).abs()
    assert blocked.dtype == whole.dtype and bool((gap <= bound).all()), f"{name}: max gap {gap.max():.3g}"


def test_row_blocks_of_transposed_lora_delta(tmp_path):
    from safetensors.torch import save_file

    from realignkit.checkpoints import open_source

    (tmp_path / "base").mkdir()
    save_file({"emb.weight": torch.randn(10, 6)}, str(tmp_path / "base" / "model.safetensors"))
    (tmp_path / "ad").mkdir()
    save_file({"base_model.model.emb.lora_embedding_A": torch.randn(3, 10),
               "base_model.model.emb.lora_embedding_B": torch.randn(6, 3)},
              str(tmp_path / "ad" / "adapter_model.safetensors"))
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 3, "lora_alpha": 6}))
    aligned = open_source(tmp_path / "base", role="aligned")
    adapter = open_source(tmp_path / "ad", role="tuned", aligned=aligned)
    whole = adapter.tuned_from_aligned("emb.weight", aligned.get("emb.weight"))
    part = adapter.tuned_from_aligned("emb.weight", aligned.get_rows("emb.weight", 4, 7), rows=(4, 7))
    torch.testing.assert_close(part, whole[4:7])
    factors = adapter.lora_factors("emb.weight")
    torch.testing.assert_close(whole - aligned.get("emb.weight"), (factors.b @ factors.a).T * 2.0)


def test_safe_lora_adapter_output_equals_merged_output(tiny_family, tiny_lora_dir, tmp_path):
    common = dict(aligned=tiny_family["aligned"], tuned=[tiny_lora_dir], unaligned=tiny_family["base"], options=QUIET)
    run_repair("safe_lora", {"num_layers": 3}, out=tmp_path / "model", **common)
    run_repair("safe_lora", {"num_layers": 3, "output": "adapter"}, out=tmp_path / "adapter", **common)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not list((tmp_path / "adapter").glob("model*.safetensors"))
    manifest = json.loads((tmp_path / "adapter" / "realignkit.json").read_text())
    assert manifest["output"]["kind"] == "lora_adapter" and len(manifest["safe_lora"]["projected"]) == 3
    merged = peft_merged_state(tiny_family["aligned"], tmp_path / "adapter")
    for name, tensor in load_dir(tmp_path / "model").items():
        torch.testing.assert_close(merged[name], tensor, rtol=1e-4, atol=1e-5)
    original = load_file(str(tiny_lora_dir / "adapter_model.safetensors"))
    projected = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    changed = sorted(k for k in original if not torch.equal(original[k], projected[k]))
    assert len(changed) == 3 and all(".lora_B." in k for k in changed)


def test_adapter_output_needs_an_adapter(tiny_family, tmp_path):
    from realignkit.common import BadInputError

    with pytest.raises(BadInputError, match="needs a LoRA adapter"):
        run_repair("safe_lora", {"output": "adapter"}, aligned=tiny_family["aligned"], tuned=[tiny_family["tuned"]],
                   unaligned=tiny_family["base"], out=tmp_path / "o", options=QUIET)
    assert not (tmp_path / "o").exists()


METHOD_CASES = [
    ("interpolate", {"alpha": 0.3}, 1),
    ("slerp", {"t": 0.6}, 1),
    ("task_arithmetic", {"scale": 0.8, "weights": [1.0, 0.5]}, 2),
    ("ties", {"density": 0.4}, 2),
    ("dare", {"density": 0.7, "seed": 3}, 2),
    ("resta", {"beta": 0.7}, 1),
]


@pytest.fixture(scope="module")
def lora_merged(tiny_family, tiny_lora_dir):
    return peft_merged_state(tiny_family["aligned"], tiny_lora_dir)


@pytest.mark.parametrize("layout", ["sharded", "lora", "vlm"])
@pytest.mark.parametrize("method,params,n_tuned", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_every_method_on_every_layout_matches_its_tensor_function(
    tiny_family, tiny_llama_sharded_dir, tiny_lora_dir, tiny_vlm_tuned_dir, lora_merged, tmp_path,
    method, params, n_tuned, layout,
):
    """The engine feeds each method the right tensors (names mapped, LoRA folded in) and writes what it returns."""
    from realignkit.methods.registry import get_method

    first = {"sharded": tiny_llama_sharded_dir, "lora": tiny_lora_dir, "vlm": tiny_vlm_tuned_dir}[layout]
    tuned = [first, tiny_family["tuned2"]][:n_tuned]
    out = tmp_path / "out"
    run_repair(method, params, aligned=tiny_family["aligned"], tuned=tuned, unaligned=tiny_family["base"], out=out,
               options=QUIET)
    a, b, t2 = (load_dir(tiny_family[r]) for r in ("aligned", "base", "tuned2"))
    t1 = lora_merged if layout == "lora" else load_dir(first)
    got = load_dir(out)
    spec = get_method(method)
    parsed = spec.parse_params(params)
    prefix = "language_model." if layout == "vlm" else ""
    for name in a:
        inputs = [t1[prefix + name], t2[name]][:n_tuned]
        expected = spec.fn(a[name], inputs, parsed, unaligned=b[name], name=prefix + name, state=None)
        torch.testing.assert_close(got[prefix + name], expected, rtol=1e-5, atol=1e-6)
    assert set(got) == set(t1)  # VLM-only tensors passed through, nothing dropped
