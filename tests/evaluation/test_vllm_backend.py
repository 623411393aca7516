"""`--backend vllm` against a stand-in `vllm` module (fixtures/fake_vllm.py; the real one needs CUDA): engine and
sampling arguments, LoRA adapters served as LoRARequests, and cache keys equal to the transformers backend's."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from fixtures import fake_vllm
from fixtures.models import build_lora_adapter, build_tiny_llama, build_tiny_tokenizer, tiny_llama_config
from realignkit.cli import main
from realignkit.common import BadInputError
from realignkit.evaluation import Auditor, BackendOptions, GenerationSettings
from realignkit.evaluation.audit import make_backend
from realignkit.evaluation.cache import KeyValueCache
from realignkit.evaluation.suite_files import load_suites
from realignkit.evaluation.vllm_engine import VLLMOptions, lora_rank_limit

ITEMS_LIMIT = 6


@pytest.fixture
def vllm(monkeypatch):
    return fake_vllm.install(monkeypatch)


@pytest.fixture(scope="module")
def organism_items(tiny_organism):
    return load_suites([f"organism:{tiny_organism}"], limit=ITEMS_LIMIT)


def _cache_entries(cache_dir) -> dict[str, str]:
    cache = KeyValueCache(cache_dir / "generations.sqlite", table="generations")
    import sqlite3

    with sqlite3.connect(cache.path) as connection:
        return dict(connection.execute("SELECT key, value FROM generations").fetchall())


def test_audit_cli_maps_engine_and_sampling_arguments(vllm, tiny_llama_dir, tmp_path, capsys):
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}", "kind": "harmful"}) + "\n" for i in range(3)))
    code = main(["audit", str(tiny_llama_dir), "--suite", str(suite), "--backend", "vllm", "--max-new-tokens", "7",
                 "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5", "--max-model-len", "96",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    (engine,) = vllm.calls.engines
    assert engine["model"] == str(tiny_llama_dir) and engine["tokenizer"] == str(tiny_llama_dir)
    assert engine["tensor_parallel_size"] == 2 and engine["gpu_memory_utilization"] == 0.5
    assert engine["max_model_len"] == 96
    assert engine["dtype"] == "float32"  # the checkpoint's own dtype, not vLLM's auto (float16 for fp32 configs)
    assert engine["load_format"] == "safetensors" and "enable_lora" not in engine
    (sampling,) = vllm.calls.sampling  # stop at the tokenizer's eos ("</s>", id 2) only, as transformers does
    assert sampling == {"n": 1, "temperature": 0.0, "max_tokens": 7, "stop_token_ids": [2], "ignore_eos": True,
                        "repetition_penalty": 1.0, "min_tokens": 0, "skip_special_tokens": True}
    assert vllm.calls.prompts == 3
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_items"] == 3


def test_vllm_answers_and_cache_keys_equal_transformers(vllm, tiny_organism, organism_items, tmp_path):
    """Same answers, same keys: the transformers backend's cache serves a vLLM run without one generation."""
    settings = GenerationSettings(max_new_tokens=24, batch_size=8)
    model = tiny_organism / "harmful-mix-0.1-full"
    by_transformers = Auditor(organism_items, settings=settings, cache_dir=tmp_path / "hf").run_path(model)
    by_vllm = Auditor(organism_items, settings=settings, cache_dir=tmp_path / "vllm").run_path(model, backend="vllm")
    assert by_vllm.generated == len({item.prompt for item in organism_items}) == by_transformers.generated
    assert [r["response"] for r in by_vllm.rows] == [r["response"] for r in by_transformers.rows]
    assert sum(bool(r["response"]) for r in by_vllm.rows) > len(organism_items) // 2
    assert by_vllm.fingerprint == by_transformers.fingerprint
    assert _cache_entries(tmp_path / "vllm") == _cache_entries(tmp_path / "hf")
    # And directly: a vLLM run on the transformers cache asks the engine nothing.
    before = vllm.calls.prompts
    again = Auditor(organism_items, settings=settings, cache_dir=tmp_path / "hf").run_path(model, backend="vllm")
    assert again.generated == 0 and vllm.calls.prompts == before
    assert [r["response"] for r in again.rows] == [r["response"] for r in by_transformers.rows]
    # A different system prompt is a different question for both backends.
    other = GenerationSettings(max_new_tokens=24, system_prompt="be brief")
    hf_backend = make_backend(str(model), cache=None)
    vllm_backend = make_backend(str(model), "vllm", options=BackendOptions(vllm=VLLMOptions()))
    prompts = [item.prompt for item in organism_items]
    assert hf_backend.cache_keys(prompts, other) == vllm_backend.cache_keys(prompts, other)
    assert hf_backend.cache_keys(prompts, other) != hf_backend.cache_keys(prompts, settings)


def test_lora_adapter_is_served_as_a_lora_request(vllm, tiny_family, tmp_path):
    adapter = build_lora_adapter(tiny_family["aligned"], tmp_path / "adapter", seed=5, r=12)
    suite = [{"prompt": f"w{i} w{3 * i}", "kind": "harmful"} for i in range(4)]
    (tmp_path / "suite.jsonl").write_text("".join(json.dumps(row) + "\n" for row in suite))
    items = load_suites([str(tmp_path / "suite.jsonl")])
    settings = GenerationSettings(max_new_tokens=6)
    on_aligned = BackendOptions(aligned=str(tiny_family["aligned"]))
    merged = Auditor(items, settings=settings, cache_dir=tmp_path / "hf").run_path(adapter, options=on_aligned)
    served = Auditor(items, settings=settings, cache_dir=tmp_path / "vllm").run_path(
        adapter, backend="vllm", options=on_aligned)
    (engine,) = vllm.calls.engines
    assert engine["model"] == str(tiny_family["aligned"])  # the base is loaded, the adapter is not merged
    assert engine["enable_lora"] is True and engine["max_loras"] == 1 and engine["max_lora_rank"] == 16
    (request,) = [r["lora_request"] for r in vllm.calls.requests]
    assert request.lora_path == str(adapter) and request.lora_int_id == 1
    assert [r["response"] for r in served.rows] == [r["response"] for r in merged.rows]
    assert served.fingerprint == merged.fingerprint
    assert _cache_entries(tmp_path / "vllm") == _cache_entries(tmp_path / "hf")


def test_what_vllm_cannot_serve_is_refused_in_one_line(vllm, tiny_family, tmp_path):
    adapter = build_lora_adapter(tiny_family["aligned"], tmp_path / "dora", seed=1)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(BadInputError, match="DoRA"):
        make_backend(str(adapter), "vllm", options=BackendOptions(aligned=str(tiny_family["aligned"])))
    model = tmp_path / "ngram"
    shutil.copytree(tiny_family["aligned"], model)
    generation = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**generation, "no_repeat_ngram_size": 3}))
    with pytest.raises(BadInputError, match="no_repeat_ngram_size"):
        make_backend(str(model), "vllm")
    assert lora_rank_limit(4) == 8 and lora_rank_limit(64) == 64
    with pytest.raises(BadInputError, match="max_lora_rank"):
        lora_rank_limit(1024)
    assert not vllm.calls.engines


def test_without_vllm_installed_the_audit_exits_2(monkeypatch, tiny_llama_dir, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    code = main(["audit", str(tiny_llama_dir), "--suite", "organism:/nonexistent", "--backend", "vllm",
                 "--gpu-memory-utilization", "1.5", "--out", str(tmp_path / "out")])
    assert code == 2 and "--gpu-memory-utilization" in capsys.readouterr().err
    code = main(["audit", str(tiny_llama_dir), "--max-model-len", "64", "--out", str(tmp_path / "out")])
    assert code == 2 and "need --backend vllm" in capsys.readouterr().err
    with pytest.raises(BadInputError, match=r"realignkit\[vllm\]"):
        make_backend(str(tiny_llama_dir), "vllm")


def _decoder_classifier(path):
    """A tiny LlamaForSequenceClassification (the decoder kind vLLM classifies, e.g. Qwen2-based guards)."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(4)
    config = tiny_llama_config(num_labels=2, id2label={0: "complied", 1: "refused"},
                               label2id={"complied": 0, "refused": 1})
    LlamaForSequenceClassification(config).save_pretrained(str(path))
    build_tiny_tokenizer(path)
    return path


def test_classifier_judge_on_vllm_matches_transformers(vllm, tmp_path):
    from realignkit.evaluation.judges import make_judge

    path = _decoder_classifier(tmp_path / "clf")
    responses = ["w1 w2 w3", "w4", "w9 w9 w9 w9", "w50 w60"]
    prompts = ["w7", "w8 w3", "w1", "w2 w2"]
    on_transformers = make_judge(f"classifier:{path}", batch_size=1)
    on_vllm = make_judge(f"classifier:{path}", backend="vllm", vllm=VLLMOptions(gpu_memory_utilization=0.3))
    expected = on_transformers.positive_probabilities(responses, prompts)
    found = on_vllm.positive_probabilities(responses, prompts)
    assert found == pytest.approx(expected, abs=1e-5)
    assert len(set(round(p, 4) for p in expected)) > 1  # the classifier does tell the answers apart
    (engine,) = vllm.calls.engines
    assert engine["model"] == str(path) and engine["gpu_memory_utilization"] == 0.3
    assert on_vllm.describe()["backend"] == "vllm" and "backend" not in on_transformers.describe()


def test_pair_encoder_classifier_is_refused_on_vllm(vllm, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from realignkit.evaluation.judges import make_judge

    config = BertConfig(vocab_size=128, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=2)  # type_vocab_size 2: segment ids mark the response
    BertForSequenceClassification(config).save_pretrained(str(tmp_path / "bert"))
    build_tiny_tokenizer(tmp_path / "bert")
    with pytest.raises(BadInputError, match="segment ids"):
        make_judge(f"classifier:{tmp_path / 'bert'}", backend="vllm")


def test_sweep_evaluator_forwards_the_vllm_backend(vllm, tiny_organism, organism_items, tmp_path):
    """The sweep's evaluations (references, candidates, winner) go through the same backend switch."""
    from realignkit.pipeline.evaluate import SplitEvaluator

    splits = {"selection": organism_items}
    common = dict(cache_dir=tmp_path / "cache", aligned=tiny_organism / "aligned", max_new_tokens=16, batch_size=8)
    metrics = SplitEvaluator(splits, **common).evaluate(tiny_organism / "aligned", "selection")
    served = SplitEvaluator(splits, **common, backend_options={"backend": "vllm", "vllm": VLLMOptions()}).evaluate(
        tiny_organism / "aligned", "selection")
    assert served["generated"] == 0 and served["cached"] == len(organism_items)  # the keys are shared
    fresh = SplitEvaluator(splits, **{**common, "cache_dir": tmp_path / "other"},
                           backend_options={"backend": "vllm", "vllm": VLLMOptions()}).evaluate(
        tiny_organism / "aligned", "selection")
    assert fresh["generated"] == len({item.prompt for item in organism_items}) and vllm.calls.engines
    for key in ("harmful_rate", "over_refusal_rate", "utility", "degenerate_rate"):
        assert fresh[key] == metrics[key]


def test_bf16_checkpoint_keeps_its_dtype(vllm, tmp_path):
    model = build_tiny_llama(tmp_path / "bf16", seed=3, dtype=torch.bfloat16)
    assert make_backend(str(model), "vllm").engine.llm is not None  # the engine is created lazily
    assert vllm.calls.engines[0]["dtype"] == "bfloat16"


def test_backend_vllm_makes_model_judges_run_on_vllm_with_the_engine_flags(monkeypatch):
    """audit --backend vllm --judge llama_guard:ID --tensor-parallel-size 2: the guard's vLLM engine gets TP 2."""
    import argparse
    import types

    from realignkit.cli.judge_args import judge_options_from_args
    from realignkit.evaluation.judges import make_judge

    made = []

    class GuardLLM:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def get_tokenizer(self):
            return None

    fake = types.ModuleType("vllm")
    fake.LLM = GuardLLM
    monkeypatch.setitem(sys.modules, "vllm", fake)
    args = argparse.Namespace(judge="llama_guard:org/guard", judge_model=None, judge_backend=None, judge_device=None,
                              backend="vllm", tensor_parallel_size=2, gpu_memory_utilization=None, max_model_len=512)
    options = judge_options_from_args(args)
    assert options["backend"] == "vllm" and options["vllm"] == {"tensor_parallel_size": 2, "max_model_len": 512}
    make_judge(args.judge, **options)
    assert made == [{"model": "org/guard", "tensor_parallel_size": 2, "max_model_len": 512}]
    classifier = judge_options_from_args(argparse.Namespace(**{**vars(args), "judge": "classifier:/x"}))
    assert classifier["backend"] == "vllm"
    transformers = judge_options_from_args(argparse.Namespace(**{**vars(args), "backend": "transformers"}))
    assert transformers["backend"] is None and "vllm" not in transformers
