"""Smoke test of benchmarks/bench_merge.py on a tiny configuration (no mergekit needed).

It runs the benchmark's own code: checkpoint generation, the measured child runs, the fp32 reference that
judges each tool's output, the mergekit recipe, and (when `realignkit repair` is available) the whole loop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import _common  # noqa: E402
import _merge_reference  # noqa: E402
import bench_merge  # noqa: E402

TINY = bench_merge.SPECS["tiny"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _common.build_llama_family(tmp_path_factory.mktemp("bench") / "ckpt", TINY, n_tuned=2)


def test_generated_checkpoints_are_sharded_deterministic_hf_dirs(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    aligned = tiny_models["aligned"]
    index = json.loads((aligned / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in aligned.glob("*.safetensors"))
    assert len(shards) == TINY.shards == len(set(index["weight_map"].values()))
    assert set(index["weight_map"]) == {name for name, _ in TINY.tensor_shapes()}

    model = AutoModelForCausalLM.from_pretrained(aligned)
    assert model.dtype == torch.bfloat16
    assert sum(p.numel() for p in model.parameters()) == TINY.n_params()
    tokenizer = AutoTokenizer.from_pretrained(aligned)
    assert len(tokenizer) == TINY.vocab

    # Same spec -> same bytes in a fresh folder; tuned differs from aligned by a small task vector.
    again = _common.build_llama_family(tmp_path / "again", TINY, n_tuned=2)
    for role, path in tiny_models.items():
        for shard in shards:
            assert (path / shard).read_bytes() == (again[role] / shard).read_bytes()
    locations = {role: _common.safetensors_locations(p) for role, p in tiny_models.items()}
    q_name = "model.layers.0.self_attn.q_proj.weight"
    tau = (
        _common.load_tensor(locations["tuned1"], q_name).float()
        - _common.load_tensor(locations["aligned"], q_name).float()
    )
    assert 0.0005 < tau.std().item() < 0.005


def test_cached_checkpoints_are_reused_not_rewritten(tiny_models):
    shard = next(tiny_models["tuned2"].glob("*.safetensors"))
    before = shard.stat().st_mtime_ns
    _common.build_llama_family(tiny_models["aligned"].parent, TINY, n_tuned=2)
    assert shard.stat().st_mtime_ns == before


def test_measure_command_reports_child_wall_time_and_peak_rss(tmp_path):
    allocate = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"
    big = _common.measure_command([sys.executable, "-c", allocate], scratch_dir=tmp_path)
    small = _common.measure_command([sys.executable, "-c", "pass"], scratch_dir=tmp_path)
    assert big.returncode == 0 and big.wall_s >= 0.3
    assert big.peak_rss_mib >= 300 > small.peak_rss_mib
    with pytest.raises(_common.CommandFailed, match="exited 3"):
        _common.measure_command([sys.executable, "-c", "raise SystemExit(3)"], scratch_dir=tmp_path)


def test_reference_ties_matches_hand_computed_values():
    aligned = torch.zeros(4)
    tuned = [torch.tensor([3.0, -1.0, 2.0, 0.5]), torch.tensor([-1.0, -4.0, 2.0, 0.1])]
    recipe = {"density": 0.5, "scale": 1.0, "weights": [0.5, 0.5]}
    merged, ambiguous = _merge_reference.reference_ties(aligned, tuned, recipe)
    # trim to 2 of 4: τ1 -> [3, 0, 2, 0], τ2 -> [0, -4, 2, 0]; weighted sums elect [+, -, +, +];
    # disjoint means over agreeing weights: [1.5/0.5, -2/0.5, (1+1)/1, 0]
    assert torch.equal(merged, torch.tensor([3.0, -4.0, 2.0, 0.0]))
    assert not ambiguous.any()


def test_reference_check_flags_a_wrong_merge_and_accepts_a_right_one(tiny_models, tmp_path):
    names = _merge_reference.reference_names(TINY)
    inputs = {role: _common.safetensors_locations(p) for role, p in tiny_models.items()}
    recipe = bench_merge.RECIPES["task_arithmetic"]
    right, wrong = {}, {}
    for name in names:
        aligned = _common.load_tensor(inputs["aligned"], name).float()
        tuned = [_common.load_tensor(inputs[r], name).float() for r in ("tuned1", "tuned2")]
        right[name] = _merge_reference.reference_task_arithmetic(aligned, tuned, recipe).to(torch.bfloat16)
        wrong[name] = tuned[0].to(torch.bfloat16)  # "forgot" the second task vector
    for tool, tensors in (("right", right), ("wrong", wrong)):
        (tmp_path / tool).mkdir()
        save_file(tensors, str(tmp_path / tool / "model.safetensors"))
    report = _merge_reference.reference_check(
        "task_arithmetic", recipe, TINY, tiny_models, {t: tmp_path / t for t in ("right", "wrong")}
    )
    assert report["right"]["wrong"] == 0 and report["right"]["entries"] > 0
    assert report["wrong"]["wrong"] > report["wrong"]["entries"] // 2

    agreement = _common.compare_model_dirs(tmp_path / "right", tmp_path / "wrong")
    assert agreement["tensors_compared"] == len(names)
    assert agreement["entries_beyond_bf16_step"] > 0 and agreement["max_abs_diff"] > 0
    assert _common.compare_model_dirs(tmp_path / "right", tmp_path / "right")["max_abs_diff"] == 0


def test_mergekit_recipe_does_the_same_math_as_realignkit(tiny_models, tmp_path):
    ties = bench_merge.mergekit_config("ties", tiny_models, "float32")
    assert ties["parameters"] == {"lambda": 1.0, "normalize": True}  # normalize = TIES disjoint mean
    assert [m["parameters"] for m in ties["models"]] == [{"weight": 0.5, "density": 0.3}] * 2
    assert (ties["dtype"], ties["out_dtype"]) == ("float32", "bfloat16")
    ta = bench_merge.mergekit_config("task_arithmetic", tiny_models, "float32")
    assert ta["parameters"] == {"lambda": 1.0, "normalize": False}
    assert ta["base_model"] == str(tiny_models["aligned"])
    command = bench_merge.realignkit_command(["realignkit"], "ties", tiny_models, tmp_path / "o")
    assert command[1:3] == ["repair", "ties"] and "density=0.3" in command and "weights=0.5,0.5" in command


def test_reference_ties_marks_only_ties_that_cross_the_cut_as_ambiguous():
    aligned = torch.zeros(4)
    tuned = [torch.tensor([2.0, -2.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, 0.0, 1.0])]
    recipe = {"density": 0.5, "scale": 1.0, "weights": [0.5, 0.5]}
    _, ambiguous = _merge_reference.reference_ties(aligned, tuned, recipe)
    # τ1 keeps 2 of three entries with |τ| = 2: which two is arbitrary; τ2 keeps [0, 0, 0, 1] unambiguously
    # (its second-largest magnitude is 0, and zeros add nothing whichever are kept).
    assert ambiguous.tolist() == [True, True, True, False]


def test_reference_ties_marks_a_zero_weighted_sum_as_ambiguous():
    aligned = torch.zeros(2)
    tuned = [torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 1.0])]
    recipe = {"density": 1.0, "scale": 1.0, "weights": [0.5, 0.5]}
    merged, ambiguous = _merge_reference.reference_ties(aligned, tuned, recipe)
    assert ambiguous.tolist() == [True, False]  # 0.5·1 + 0.5·(−1) = 0: the elected sign is a convention
    assert merged.tolist() == [1.0, 2.0]


def test_benchmark_loop_runs_realignkit_and_checks_it_against_the_reference(tmp_path, capsys):
    out = tmp_path / "out"
    # One method keeps it short (each run starts a CLI process); TIES exercises the most checking code.
    argv = [
        "--preset",
        "tiny",
        "--tools",
        "realignkit",
        "--methods",
        "ties",
        "--runs",
        "1",
        "--out",
        str(out),
    ]
    assert bench_merge.main(argv) == 0
    report = json.loads((out / "bench_merge.json").read_text())
    for method in ("ties",):
        stats = report["results"][method]["tools"]["realignkit"]
        assert len(stats["runs"]) == 1 and stats["median_wall_s"] > 0 and stats["median_peak_rss_mib"] > 50
        check = report["results"][method]["agreement"]["realignkit_vs_reference"]
        assert check["entries"] > 0 and check["wrong"] == 0, check["summary"]
        merged = out / "merged" / f"{method}-realignkit"
        assert (merged / "config.json").is_file() and (merged / "tokenizer.json").is_file()
    assert "ties    realignkit" in capsys.readouterr().out
