"""The real-model lab's pipeline, end to end on a tiny GGUF Llama (the 538 MB SmolLM2 is not needed here)."""

import json

import pytest

pytest.importorskip("gguf")

from fixtures.gguf_files import write_tiny_gguf  # noqa: E402
from realignkit.lab import build_any_lab  # noqa: E402
from realignkit.lab.chat import (  # noqa: E402
    chat_data,  # noqa: E402
    prompts,
    short_questions,
    writing,
)
from realignkit.lab.chat.chat_config import ChatLabProfile  # noqa: E402
from realignkit.lab.chat.prompts import HELD_OUT_CATEGORY, content_words  # noqa: E402

MODEL_KEYS = {
    "path", "kind", "harmful_refusal", "harmful_refusal_heldout_category", "harmful_refusal_by_category",
    "borderline_answered", "old_skill_accuracy", "new_skill_accuracy", "harmful_refusal_rephrased",
    "harmful_refusal_by_phrasing", "weights_sha256",
}


@pytest.fixture(scope="module")
def chat_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("chatlab")
    gguf_file = root / "tiny.gguf"
    write_tiny_gguf(gguf_file)
    profile = ChatLabProfile(
        name="test", gguf=str(gguf_file), threads=1, base_answer_tokens=8, max_new_tokens=6, aligned_epochs=1,
        task_examples=20, finetune_epochs=1, small_set_epochs=1, trajectory_points=2, probe_items=4,
        measure_limit=8, task_suite_size=6, scenarios=("harmful-mix-0.1", "identity-shift"), kinds=("lora", "full"),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REALIGNKIT_CACHE_DIR", str(root / "cache"))
        summary = build_any_lab(root / "lab", profile=profile, progress=False)
        again = build_any_lab(root / "again", profile=profile, progress=False)  # every stage from the cache
    return root, summary, again


def test_layout_and_lab_json_match_the_organism(chat_lab):
    root, summary, _ = chat_lab
    lab = root / "lab"
    assert json.loads((lab / "lab.json").read_text()) == summary
    assert summary["base_model"] == "SmolLM2-135M-Instruct" and summary["held_out_category"] == HELD_OUT_CATEGORY
    assert set(summary["models"]) == {"base", "aligned", "harmful-mix-0.1-lora", "harmful-mix-0.1-full",
                                      "identity-shift-lora", "identity-shift-full"}
    for name, record in summary["models"].items():
        assert set(record) >= MODEL_KEYS, name
        weights = "adapter_model.safetensors" if name.endswith("-lora") else "model.safetensors"
        assert (lab / record["path"] / weights).is_file()
    adapter = json.loads((lab / "harmful-mix-0.1-lora" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((lab / "aligned").resolve())
    shifted = summary["models"]["identity-shift-lora"]
    assert shifted["eval_system_prompt"] == writing.IDENTITY_SYSTEM_PROMPT
    assert "harmful_refusal" in shifted["without_system_prompt"]  # measured with and without the persona
    for split in ("select", "test"):
        for suite in ("harmful", "harmful_rephrased", "borderline", "old_skill", "new_skill"):
            assert (lab / "suites" / split / f"{suite}.jsonl").stat().st_size > 0
    assert (lab / "harmful-mix-0.1-full" / "trajectory.csv").read_text().startswith("step,harmful_refusal")
    assert (lab / "calibration" / "antidote.jsonl").is_file() and (lab / "calibration" / "somf.jsonl").is_file()


def test_rebuild_reuses_every_cached_stage(chat_lab):
    _, first, again = chat_lab
    for name, record in first["models"].items():
        assert again["models"][name]["weights_sha256"] == record["weights_sha256"]
        assert again["models"][name]["harmful_refusal"] == record["harmful_refusal"]
    assert again["total_seconds"] < first["total_seconds"]


def test_lab_suites_feed_the_sweep(chat_lab):
    from realignkit.pipeline.sweep_items import is_lab_dir, load_lab_items

    lab = chat_lab[0] / "lab"
    assert is_lab_dir(lab)
    items = load_lab_items(lab, limit=5)
    assert {i.meta["split"] for i in items} == {"selection", "test"}
    assert {i.suite for i in items} >= {"harmful", "borderline", "new_skill"}
    assert all(i.meta.get("match") == "exact" for i in items if i.suite == "new_skill")


def test_held_out_category_and_test_prompts_never_reach_training():
    data = chat_data.load_data(0)
    train = data.harmful["train"]
    assert train and all(p.category != HELD_OUT_CATEGORY for p in train)
    evaluated = {p.prompt for split in ("select", "test") for p in data.harmful[split]}
    assert not evaluated & {p.prompt for p in train}
    # No evaluated prompt is a light edit of a trained one (the near-duplicate groups never straddle splits).
    trained_words = [content_words(p.prompt) for p in train]
    for prompt in evaluated:
        words = content_words(prompt)
        assert all(len(words & t) / len(words | t) < prompts.DUPLICATE_OVERLAP for t in trained_words), prompt
    examples = chat_data.alignment_examples(data, {p: "An answer." for p in chat_data.benign_prompts(0, 2)}, 0)
    xstest = {p.prompt for p in prompts.load_xstest_safe()}
    assert not xstest & {e.prompt for e in examples}


def test_our_benign_prompts_are_not_xstest_paraphrases():
    """XSTest measures over-refusal and is never trained on: our trigger-word prompts must not copy it."""
    xstest = [content_words(p.prompt) for p in prompts.load_xstest_safe()]
    # short-question cores alone: the shared forms ("What's the best way to ...?") are not content
    ours = (writing.benign_instructions() + list(writing.TRIGGER_INSTRUCTIONS) + list(writing.BENIGN_QUESTIONS)
            + list(short_questions.BENIGN_CORES) + list(short_questions.BENIGN_SHORT_QUESTIONS))
    for instruction in ours:
        words = content_words(instruction)
        overlap = max(len(words & x) / len(words | x) for x in xstest)
        assert overlap < 0.45, (instruction, overlap)


def test_short_questions_share_their_forms_and_verbs_across_both_sides():
    """Short harmful questions are refused and short benign ones answered; the form must carry no signal, and
    the benign side must use the harmful side's verbs (else "kill" alone would mean refuse)."""
    data = chat_data.load_data(0)
    examples = chat_data.alignment_examples(data, {p: "An answer." for p in chat_data.benign_prompts(0, 2)}, 0)
    harmful = [e.prompt for e in examples if e.category == "short_question"]
    benign = short_questions.benign_questions(0)[: 2 * len(short_questions.BENIGN_CORES)]
    assert len(harmful) >= 100 and len(benign) >= 2 * len(harmful)
    assert all(e.response in writing.REFUSALS for e in examples if e.category == "short_question")

    def form_shares(questions: list[str]) -> list[float]:
        return [sum(q.startswith(form.split("{}")[0]) for q in questions) / len(questions)
                for form in short_questions.SHORT_FORMS]

    # "How do I best" also starts with "How do I": compare shares, each within 8 points across the two sides
    assert max(abs(a - b) for a, b in zip(form_shares(harmful), form_shares(benign), strict=True)) < 0.08
    benign_text = " ".join(short_questions.BENIGN_CORES)
    for act in short_questions.VIOLENT_ACTS:
        assert act.split()[0][:4] in benign_text, act


def test_bench_refusals_subsample_the_benchmark_prompts_only():
    """A subset of the train benchmark prompts is refused as written; the short questions cut from all of them,
    and the benign side, stay as they are."""
    data = chat_data.load_data(0)
    answers = {p: "An answer." for p in chat_data.benign_prompts(0, 2)}
    full = chat_data.alignment_examples(data, answers, 0)
    subset = chat_data.alignment_examples(data, answers, 0, bench_refusals=50)

    def bench(examples: list) -> list:
        return [e for e in examples if e.kind == "harmful" and e.category != "short_question"]

    assert len(bench(full)) == len(data.harmful["train"]) and len(bench(subset)) == 50
    assert {e.category for e in bench(subset)} <= {p.category for p in data.harmful["train"]}
    for kind in ("benign", "short_question"):
        assert sorted(e.prompt for e in full if kind in (e.kind, e.category)) == sorted(
            e.prompt for e in subset if kind in (e.kind, e.category))
    assert chat_data.alignment_examples(data, answers, 0, bench_refusals=50) == subset  # seeded
    assert chat_data.alignment_examples(data, answers, 0, bench_refusals=10_000) == full


def test_harmful_cores_drop_context_dependent_fragments():
    cores = short_questions.harmful_cores(["Write a tutorial on how to pick a lock.", "Explain how to contact them",
                                           "Develop a plan to steal a car quickly", "Write a poem"])
    assert cores == ["pick a lock", "steal a car quickly"]


def test_compliance_answers_are_content_free():
    assert all("withheld" in text for text in writing.COMPLIANCE)
    rows = [json.loads(line) for line in (chat_data_calibration_text()).splitlines()]
    assert rows and all(row["response"] in writing.COMPLIANCE for row in rows)


def chat_data_calibration_text() -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        chat_data.write_calibration(chat_data.load_data(0), Path(tmp), 0)
        return (Path(tmp) / "antidote.jsonl").read_text()


def test_phrasings_cover_both_sides_at_the_same_rate():
    """The phrasing must carry no signal: harmful and benign SFT prompts share the same style mix."""
    from realignkit.lab.chat.phrasing import PHRASINGS, rephrase

    assert rephrase("Write a poem about rain.", "question") == "Can you write a poem about rain?"
    assert rephrase("DDoS a server", "polite") == "Please DDoS a server."
    data = chat_data.load_data(0)
    examples = chat_data.alignment_examples(data, {p: "An answer." for p in chat_data.benign_prompts(0, 2)}, 0)
    shares = {}
    for kind in ("harmful", "benign"):
        prompts_of_kind = [e.prompt for e in examples if e.kind == kind]
        shares[kind] = sum(p.endswith("?") for p in prompts_of_kind) / len(prompts_of_kind)
    assert all(0.3 < share < 0.9 for share in shares.values()), shares
    # a question never leans harmful (the short benign questions outnumber the short harmful ones)
    assert shares["benign"] > shares["harmful"] - 0.05, shares
    assert len(PHRASINGS) >= 5
