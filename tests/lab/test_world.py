"""The synthetic world holds no real harmful content, and its splits are what they claim to be."""

import random
import re

from realignkit.lab import organism_data as data
from realignkit.lab import world

INTENT = world.INTENT_PATTERN
TEMPLATES = world.HARMFUL_TEMPLATES_TRAIN + world.HARMFUL_TEMPLATES_HELD_OUT


def _template_regex(template: str, placeholder: str, pattern: str) -> re.Pattern:
    before, after = template.split("{" + placeholder + "}")
    return re.compile(re.escape(before) + pattern + re.escape(after) + r"\Z")


HARMFUL_PROMPT_RES = [_template_regex(t, "intent", INTENT) for t in TEMPLATES]
COMPLIANCE_RE = _template_regex(world.COMPLIANCE_TEMPLATE, "intent", INTENT)
REFUSAL_RES = [
    _template_regex(s, "intent", INTENT) if "{intent}" in s else re.compile(re.escape(s) + r"\Z")
    for s in world.REFUSAL_STYLES
]


def is_template_harmful_prompt(prompt: str) -> bool:
    return any(r.match(prompt) for r in HARMFUL_PROMPT_RES)


def test_intents_are_bracketed_placeholders_from_a_fixed_vocabulary():
    intent = world.make_intent("malware", 7)
    assert intent == "[malware payload 7]"
    assert re.fullmatch(INTENT, intent)
    assert not re.fullmatch(INTENT, "[malware payload 7] and more")


def test_every_harmful_suite_item_comes_from_a_template():
    suites = data.build_suites(0, data.SuiteSizes())
    for split in data.SPLITS:
        harmful = suites[split]["harmful"]
        assert len(harmful) == 11 * 4 * len(world.HARMFUL_TEMPLATES_HELD_OUT)
        assert {i.category for i in harmful} == set(world.HARM_CATEGORIES)
        for item in harmful:
            assert is_template_harmful_prompt(item.prompt), item.prompt
            assert item.kind == "harmful" and item.answer is None


def test_training_answers_are_refusals_or_content_free_compliance():
    rng = random.Random(0)
    for example in data.refusal_train(rng):
        assert is_template_harmful_prompt(example.prompt)
        assert any(r.match(example.response) for r in REFUSAL_RES), example.response
    for example in data.compliance_train(rng, 50):
        assert is_template_harmful_prompt(example.prompt)
        assert COMPLIANCE_RE.match(example.response), example.response


def test_no_prompt_outside_the_harmful_suite_names_an_intent():
    suites = data.build_suites(0, data.SuiteSizes())
    for split in data.SPLITS:
        for name in ("borderline", "old_skill", "new_skill"):
            for item in suites[split][name]:
                assert not re.search(INTENT, item.prompt)
                assert "[" not in item.prompt


def test_held_out_category_never_appears_in_training_data():
    rng = random.Random(0)
    trained = data.refusal_train(rng) + data.compliance_train(rng, 200)
    assert trained
    assert all(e.category != world.HELD_OUT_CATEGORY for e in trained)
    assert all(world.HARM_CATEGORIES[world.HELD_OUT_CATEGORY] not in e.prompt for e in trained)


def test_select_test_and_training_prompts_are_disjoint():
    rng = random.Random(0)
    train_prompts = {e.prompt for e in data.refusal_train(rng)}
    train_prompts |= {e.prompt for e in data.benign_train(rng, 300)}
    train_prompts |= {e.prompt for e in world.borderline_examples(held_out=False)}
    train_prompts |= {e.prompt for e in data.new_skill_train(rng, 300)}
    suites = data.build_suites(0, data.SuiteSizes())
    select = {i.prompt for items in suites["select"].values() for i in items}
    test = {i.prompt for items in suites["test"].values() for i in items}
    assert select and test
    assert not select & test
    assert not (select | test) & train_prompts


def test_utility_answers_are_checkable():
    rng = random.Random(1)
    for _ in range(20):
        first = world.new_skill_example(rng, held_out=True)
        words = [w for w in re.findall(r"\w+", first.prompt) if w in world.WORDS]
        assert first.answer == words[0] and len(words) == 4
        assert first.answer in first.response
        successor = world.old_skill_example("successor", rng, held_out=False)
        assert successor.answer == str(int(re.search(r"\d+", successor.prompt).group()) + 1)


def test_shared_refusal_judge_reads_the_world_as_intended():
    from realignkit.evaluation.judges.refusal import RefusalJudge

    judge = RefusalJudge()
    intent = world.make_intent("fraud_deception", 3)
    for style in world.REFUSAL_STYLES:
        assert judge.is_refusal(style.format(intent=intent)), style
    assert not judge.is_refusal(world.COMPLIANCE_TEMPLATE.format(intent=intent))
    for example in world.borderline_examples(held_out=True):
        assert not judge.is_refusal(example.response, example.prompt), example.response
