"""audit_model / Auditor / `realignkit audit` on tiny random models (the organism has its own test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from realignkit.cli import main
from realignkit.common import BadInputError, weights_fingerprint
from realignkit.evaluation import (
    AuditOptions,
    Auditor,
    BackendOptions,
    GenerationSettings,
    audit_model,
    load_suites,
)
from realignkit.evaluation.generation import generate_responses

SETTINGS = GenerationSettings(max_new_tokens=6, batch_size=8)


class WordJudge:
    """A deterministic stand-in judge: 'refused' when the answer contains a marker word (tiny models emit w0..w99)."""

    name, version = "word", "1"

    def __init__(self, marker: str = "w7") -> None:
        self.marker = marker

    def judge_many(self, responses, prompts=None):
        return [self.marker in response.split() for response in responses]


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    rows = [{"id": f"h{i}", "prompt": f"w{i} w{i + 1} w{i + 2}", "kind": "harmful", "category": f"cat{i % 3}"}
            for i in range(12)]
    rows += [{"id": f"o{i}", "prompt": f"w{i + 30} w{i + 4}", "kind": "over_refusal", "category": "borderline"}
             for i in range(5)]
    rows += [{"id": f"u{i}", "prompt": f"w{i + 50}", "kind": "utility", "answer": f"w{i}", "category": "skill"}
             for i in range(5)]
    path = tmp_path_factory.mktemp("suites") / "mini.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_audit_with_baseline_writes_consistent_outputs(tiny_family, suite_file, tmp_path):
    out = tmp_path / "audit"
    options = AuditOptions(settings=SETTINGS, cache_dir=tmp_path / "cache", progress=False)
    results = audit_model(tiny_family["tuned"], [str(suite_file)], baseline=tiny_family["aligned"],
                          judge=WordJudge(), out_dir=out, options=options)
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "realignkit.json", "report.html", "results.json"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    for key in ("model", "baseline", "judge", "suites", "items"):
        assert key in on_disk
    assert on_disk["judge"] == {"name": "word", "version": "1"}
    assert set(on_disk["suites"]) == {"mini.harmful", "mini.over_refusal", "mini.utility"}
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 22
    harmful_rows = [r for r in rows if r["kind"] == "harmful"]
    suite = on_disk["suites"]["mini.harmful"]
    for key in ("kind", "n", "refusal_rate", "harmful_rate", "harmfulness_score", "accuracy", "ci95", "by_category",
                "flips"):
        assert key in suite
    # Every number must be recomputable from items.jsonl.
    assert suite["refusal_rate"] == pytest.approx(sum(r["refused"] for r in harmful_rows) / 12)
    assert suite["harmful_rate"] == pytest.approx(1 - suite["refusal_rate"])
    worse = sum(r["baseline_ok"] and not r["ok"] for r in harmful_rows)
    better = sum(not r["baseline_ok"] and r["ok"] for r in harmful_rows)
    assert suite["flips"]["safe_to_unsafe"] == worse and suite["flips"]["unsafe_to_safe"] == better
    assert suite["baseline"]["harmful_rate"] == pytest.approx(sum(not r["baseline_ok"] for r in harmful_rows) / 12)
    assert suite["delta"]["harmful_rate"] == pytest.approx(suite["harmful_rate"] - suite["baseline"]["harmful_rate"])
    assert len(on_disk["flipped_items"]) == sum(r["baseline_ok"] != r["ok"] for r in rows)
    assert sum(c["n"] for c in suite["by_category"].values()) == 12
    utility = on_disk["suites"]["mini.utility"]
    assert utility["accuracy"] == pytest.approx(sum(r["correct"] for r in rows if r["kind"] == "utility") / 5)
    assert any(r["response"] != r["baseline_response"] for r in rows)  # tuned really differs from aligned
    manifest = json.loads((out / "realignkit.json").read_text())
    assert manifest["command"] == "audit" and set(manifest["inputs"]) == {"model", "baseline"}


def test_generation_is_cached_by_model_prompt_and_settings(tiny_family, suite_file, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_family["aligned"]))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family["aligned"]))
    items = load_suites([str(suite_file)], limit=4)
    auditor = Auditor(items, judge=WordJudge(), settings=SETTINGS, cache_dir=tmp_path / "cache")
    first = auditor.run_model(model, tokenizer, name="aligned")
    assert first.fingerprint.startswith("state-dict:")  # no dir given: keyed by the tensors in memory

    def no_generation(*args, **kwargs):
        raise AssertionError("generation should have come from the cache")

    monkeypatch.setattr("realignkit.evaluation.generation.generate_responses", no_generation)
    again = Auditor(items, judge=WordJudge(), settings=SETTINGS, cache_dir=tmp_path / "cache").run_model(
        model, tokenizer, name="aligned")
    assert [r["response"] for r in again.rows] == [r["response"] for r in first.rows]
    longer = Auditor(items, judge=WordJudge(), settings=GenerationSettings(max_new_tokens=7),
                     cache_dir=tmp_path / "cache")
    with pytest.raises(AssertionError, match="from the cache"):
        longer.run_model(model, tokenizer)  # other settings: a miss
    import torch

    with torch.no_grad():
        model.lm_head.weight.add_(0.01)
    with pytest.raises(AssertionError, match="from the cache"):
        auditor.run_model(model, tokenizer)  # other weights: a miss


def test_batched_generation_equals_one_at_a_time(tiny_family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_family["tuned"]))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family["tuned"]))
    prompts = ["w1", "w2 w3 w4 w5 w6 w7", "w9 w9", "w10 w11 w12", "w40"]  # different lengths -> left padding
    batched = generate_responses(model, tokenizer, prompts, max_new_tokens=8, batch_size=5)
    single = [generate_responses(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    for prompt, in_batch, alone in zip(prompts, batched, single, strict=True):
        if in_batch != alone:  # padding changes the kernels' rounding: allowed to flip only a genuine near-tie
            assert _diverges_at_a_near_tie(model, tokenizer, prompt, in_batch, alone), (prompt, in_batch, alone)


def _diverges_at_a_near_tie(model, tokenizer, prompt, first, second, tolerance=1e-3):
    """The two greedy answers part where the unpadded model's top two logits differ by under `tolerance`."""
    import torch

    from realignkit.evaluation.generation import build_chat_prompts

    head = build_chat_prompts(tokenizer, [prompt])[0]
    a, b = (tokenizer(head + " " + text, add_special_tokens=False).input_ids for text in (first, second))
    split = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    with torch.no_grad():
        logits = model(torch.tensor([a[:split]])).logits[0, -1]
    return abs(float(logits[a[split]] - logits[b[split]])) < tolerance


def test_peft_adapter_dir_is_audited_on_its_base(tiny_lora_dir, tiny_family, suite_file, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    items = load_suites([str(suite_file)], limit=3)
    auditor = Auditor(items, judge=WordJudge(), settings=SETTINGS, use_cache=False)
    run = auditor.run_path(tiny_lora_dir)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_family["aligned"]))
    merged = PeftModel.from_pretrained(base, str(tiny_lora_dir)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family["aligned"]))
    expected = generate_responses(merged, tokenizer, [i.prompt for i in items], max_new_tokens=6)
    assert [r["response"] for r in run.rows] == expected
    assert run.fingerprint == weights_fingerprint(tiny_lora_dir, tiny_family["aligned"])  # adapter + its base
    override = auditor.run_path(tiny_lora_dir, options=BackendOptions(aligned=str(tiny_family["base"])))
    assert [r["response"] for r in override.rows] != expected  # --aligned really changes the base
    assert override.fingerprint == weights_fingerprint(tiny_lora_dir, tiny_family["base"]) != run.fingerprint


def _no_template_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_missing_chat_template_is_a_clear_error_or_supplied(tiny_family, suite_file, tmp_path, capsys):
    model = _no_template_copy(tiny_family["aligned"], tmp_path / "no_template")
    out = tmp_path / "out"
    code = main(["audit", str(model), "--suite", str(suite_file), "--out", str(out), "--no-cache",
                 "--max-new-tokens", "4", "--limit", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "has no chat template; pass --template FILE" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    template = tmp_path / "chat.jinja"
    template.write_text((tiny_family["aligned"] / "chat_template.jinja").read_text())
    code = main(["audit", str(model), "--suite", str(suite_file), "--out", str(out), "--no-cache",
                 "--max-new-tokens", "4", "--limit", "2", "--template", str(template)])
    assert code == 0 and (out / "results.json").is_file()
    assert "harmful_rate:" in capsys.readouterr().out


def test_bad_inputs_exit_2_and_write_nothing(tiny_family, suite_file, tmp_path, capsys):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_family["aligned"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    bad_suite = tmp_path / "bad.jsonl"
    bad_suite.write_text('{"prompt": "x", "kind": "harmful"}\n{"prompt": 3, "kind": "harmful"}\n')
    cases = [
        ([str(pickled), "--suite", str(suite_file)], "pickle weights"),
        ([str(tiny_family["aligned"]), "--suite", str(bad_suite)], "bad.jsonl line 2"),
        ([str(tiny_family["aligned"]), "--suite", str(suite_file), "--judge", "refsual"], "did you mean 'refusal'"),
        ([str(tiny_family["aligned"]), "--suite", str(suite_file), "--backend", "vlm"], "did you mean 'vllm'"),
        ([str(tmp_path / "missing"), "--suite", str(suite_file)], "is not a directory"),
        ([str(tiny_family["aligned"]), "--suite", str(suite_file), "--limit", "0"], "--limit must be"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        code = main(["audit", *argv, "--out", str(tmp_path / "out"), "--no-cache"])
        err = capsys.readouterr().err
        assert code == 2, argv
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    code = main(["audit", str(tiny_family["aligned"]), "--suite", str(suite_file), "--no-cache",
                 "--out", str(tiny_family["aligned"] / "audit")])
    assert code == 2 and "overlaps input" in capsys.readouterr().err
    # --out on an input named only through an option (the adapter's --aligned base) is refused too, even with
    # --force, because publishing the output would replace that model dir.
    code = main(["audit", str(tiny_family["tuned"]), "--aligned", str(tiny_family["aligned"]), "--suite",
                 str(suite_file), "--no-cache", "--force", "--out", str(tiny_family["aligned"])])
    assert code == 2 and "overlaps input" in capsys.readouterr().err
    assert (tiny_family["aligned"] / "config.json").is_file()
    # an --out under a regular file: one line, exit 2, not a traceback
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["audit", str(tiny_family["aligned"]), "--suite", str(suite_file), "--no-cache",
                 "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_vllm_backend_reports_a_missing_package(tiny_family, suite_file):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BadInputError, match="needs the vllm package"):
            Auditor(load_suites([str(suite_file)]), use_cache=False).run_path(tiny_family["aligned"], backend="vllm")
    else:  # pragma: no cover - only where vllm exists
        pytest.fail("this test expects an environment without vllm")


def test_openai_backend_against_a_fake_endpoint(fake_chat_server, chat_reply, suite_file, tmp_path, monkeypatch,
                                                capsys):
    fake_chat_server.reply = lambda body: (200, chat_reply(
        "I'm sorry, but I can't help with that." if body["messages"][-1]["content"].startswith("w1")
        else "Sure, here you go: w0 w1 w2"))
    monkeypatch.setenv("RK_AUDIT_KEY", "sk-audit-secret")
    out = tmp_path / "out"
    code = main(["audit", "remote-model", "--backend", "openai", "--api-base", fake_chat_server.base_url,
                 "--api-key-env", "RK_AUDIT_KEY", "--suite", str(suite_file), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    harmful = results["suites"]["mini.harmful"]
    # prompts h1 and h10, h11 start with "w1": refused; the other 9 harmful prompts are answered.
    assert harmful["refusal_rate"] == pytest.approx(3 / 12) and harmful["harmful_rate"] == pytest.approx(9 / 12)
    assert results["suites"]["mini.utility"]["accuracy"] == pytest.approx(3 / 5)  # answers contain w0, w1, w2
    assert {r["model"] for r in fake_chat_server.requests} == {"remote-model"}
    assert "sk-audit-secret" not in (out / "realignkit.json").read_text() + captured.out + captured.err
    monkeypatch.delenv("RK_AUDIT_KEY")
    code = main(["audit", "remote-model", "--backend", "openai", "--api-base", fake_chat_server.base_url,
                 "--api-key-env", "RK_AUDIT_KEY", "--suite", str(suite_file), "--out", str(tmp_path / "o2")])
    assert code == 2 and "missing API key" in capsys.readouterr().err


def test_rubric_judge_gives_harmfulness_score_and_rate(fake_chat_server, chat_reply, suite_file, tmp_path,
                                                       monkeypatch):
    def reply(body):
        content = body["messages"][-1]["content"]
        if content.startswith("You review an AI assistant's reply"):  # the judge's rubric request
            return 200, chat_reply("#score: 5" if "Sure, step one" in content else
                                   "#score: 3" if "Maybe" in content else "#score: 1")
        if content.startswith("w1"):
            return 200, chat_reply("I can't help with that.")
        return 200, chat_reply("Maybe." if content.startswith("w2") else "Sure, step one: ...")

    fake_chat_server.reply = reply
    monkeypatch.setenv("RK_KEY", "k")
    out = tmp_path / "out"
    code = main(["audit", "gen-model", "--backend", "openai", "--api-base", fake_chat_server.base_url,
                 "--api-key-env", "RK_KEY", "--judge", "rubric", "--judge-api-base", fake_chat_server.base_url,
                 "--judge-api-model", "judge-model", "--judge-api-key-env", "RK_KEY", "--suite", str(suite_file),
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["judge"]["name"] == "rubric" and results["judge"]["endpoint_model"] == "judge-model"
    harmful = results["suites"]["mini.harmful"]
    # 12 harmful prompts: h1, h10, h11 refused (score 1); h2 "Maybe" (3); the other 8 comply (5).
    assert harmful["harmfulness_score"] == pytest.approx((3 * 1 + 3 + 8 * 5) / 12)
    assert harmful["harmful_rate"] == pytest.approx(8 / 12) and harmful["refusal_rate"] == pytest.approx(3 / 12)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert {r["score"] for r in rows if r["kind"] == "harmful"} == {1.0, 3.0, 5.0}


def test_endpoint_failure_mid_audit_leaves_nothing(fake_chat_server, chat_reply, suite_file, tmp_path, monkeypatch,
                                                   capsys):
    # The model answers; the judge endpoint returns garbage, so the audit fails after generation.
    def reply(body):
        if body["model"] == "judge-model":
            return 200, chat_reply("no score here")
        return 200, chat_reply("Sure.")

    fake_chat_server.reply = reply
    monkeypatch.setenv("RK_KEY", "k")
    out = tmp_path / "out"
    code = main(["audit", "gen-model", "--backend", "openai", "--api-base", fake_chat_server.base_url,
                 "--api-key-env", "RK_KEY", "--judge", "rubric", "--judge-api-base", fake_chat_server.base_url,
                 "--judge-api-model", "judge-model", "--judge-api-key-env", "RK_KEY", "--max-retries", "1",
                 "--suite", str(suite_file), "--limit", "2", "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "no parseable 1-5 score after 2 attempts" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
