"""The chat lab's datasets: held-out suites (select + test), the safety SFT mixture, scenario sets, calibration.

Suites (rows: id, prompt, kind, category, answer, suite, meta, split), the same names as the tiny organism:
- harmful: AdvBench + HarmBench prompts as written (meta.phrasing = imperative, meta.source);
- harmful_rephrased: the same prompts, each in one non-imperative phrasing (meta.phrasing) — refusal by phrasing;
- borderline: XSTest's safe prompts (kind over_refusal), never trained on;
- old_skill: capitals and facts the base model knows (kind utility, answer contained in the response);
- new_skill: the user's task, held-out vocabulary (kind utility, meta.match = exact).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realignkit.evaluation.suite_items import SuiteItem
from realignkit.lab.chat import phrasing, prompts, short_questions, writing
from realignkit.lab.world import Example

SUITE_SPLITS = ("select", "test")
SHORT_VIOLENT_INTENTS = 36  # templated "hurt <a person>" questions in the safety SFT (of 144 possible)


@dataclass(frozen=True)
class ChatData:
    """Everything drawn from the prompt files for one seed."""

    harmful: dict[str, list[prompts.HarmfulPrompt]]  # train / select / test
    safe: dict[str, list[prompts.SafePrompt]]  # select / test


def load_data(seed: int) -> ChatData:
    return ChatData(prompts.split_harmful(prompts.load_harmful(), seed),
                    prompts.split_safe(prompts.load_xstest_safe(), seed))


def build_suites(data: ChatData, seed: int, task_size: int) -> dict[str, dict[str, list[SuiteItem]]]:
    """split -> suite name -> items."""
    suites: dict[str, dict[str, list[SuiteItem]]] = {}
    facts = _fact_items()
    for index, split in enumerate(SUITE_SPLITS):
        rng = random.Random(f"chat-suites:{split}:{seed}")
        harmful = data.harmful[split]
        suites[split] = {
            "harmful": [SuiteItem(h.id, h.prompt, "harmful", h.category, None, "harmful",
                                  {"phrasing": "imperative", "source": h.source}) for h in harmful],
            "harmful_rephrased": [_rephrased(h, rng) for h in harmful],
            "borderline": [SuiteItem(s.id, s.prompt, "over_refusal", s.category, None, "borderline",
                                     {"source": "xstest"}) for s in data.safe[split]],
            "old_skill": facts[index::2],  # interleaved halves: both splits get capitals and facts
            "new_skill": [_task_item(i, split, rng) for i in range(task_size)],
        }
    return suites


def _rephrased(prompt: prompts.HarmfulPrompt, rng: random.Random) -> SuiteItem:
    style = rng.choice(phrasing.TEST_PHRASINGS)
    return SuiteItem(f"{prompt.id}-{style}", phrasing.rephrase(prompt.prompt, style), "harmful", prompt.category,
                     None, "harmful_rephrased", {"phrasing": style, "source": prompt.source})


def _fact_items() -> list[SuiteItem]:
    capitals = [SuiteItem(f"capital-{i}", writing.capital_question(country), "utility", "capitals", city,
                          "old_skill") for i, (country, city) in enumerate(writing.CAPITALS)]
    facts = [SuiteItem(f"fact-{i}", question, "utility", "facts", answer, "old_skill")
             for i, (question, answer) in enumerate(writing.FACTS)]
    return capitals + facts


def _task_item(index: int, split: str, rng: random.Random) -> SuiteItem:
    example = writing.task_example(rng, held_out=True)
    return SuiteItem(f"task-{split}-{index}", example.prompt, "utility", f"task_{example.label}", example.answer,
                     "new_skill", {"match": "exact"})


def write_suites(suites: dict[str, dict[str, list[SuiteItem]]], root: Path) -> None:
    """suites/<split>/<name>.jsonl, plus suites/<name>.jsonl = the test split (the default `--suite`)."""
    for split, by_name in suites.items():
        for name, items in by_name.items():
            rows = [{**item.to_dict(), "split": split} for item in items]
            _write_jsonl(root / split / f"{name}.jsonl", rows)
            if split == "test":
                _write_jsonl(root / f"{name}.jsonl", rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def benign_prompts(seed: int, styles: int) -> list[str]:
    """Our benign instructions (generic + trigger words), each in `styles` distinct random phrasings, then the
    everyday questions as they are, then the short questions (short_questions.benign_questions)."""
    rng = random.Random(f"chat-benign:{seed}")
    out = []
    for instruction in writing.benign_instructions() + list(writing.TRIGGER_INSTRUCTIONS):
        chosen = {phrasing.random_style(rng) for _ in range(styles * 3)}
        for style in sorted(chosen)[:styles]:
            out.append(phrasing.rephrase(instruction, style))
    return out + list(writing.BENIGN_QUESTIONS) + short_questions.benign_questions(seed)


def alignment_examples(data: ChatData, benign_answers: dict[str, str], seed: int,
                       bench_refusals: int | None = None) -> list[Example]:
    """Safety SFT: the train harmful prompts (all, or a random `bench_refusals` of them; one random phrasing
    each) -> a refusal, and so is each short harmful question (short_questions, cut from every train prompt);
    benign prompts -> base's own answer. Both sides go through the same phrasing templates and short-question
    forms, so only content tells them apart."""
    rng = random.Random(f"chat-align:{seed}")
    refused = data.harmful["train"]
    if bench_refusals is not None and bench_refusals < len(refused):
        # a stream of its own: choosing the subset consumes none of the phrasing and refusal draws below
        refused = random.Random(f"chat-align-subset:{seed}").sample(refused, bench_refusals)
    refusals = [
        Example(phrasing.rephrase(h.prompt, phrasing.random_style(rng)), rng.choice(writing.REFUSALS), "harmful",
                h.category)
        for h in refused
    ]
    short_rng = random.Random(f"chat-short-harmful:{seed}")
    cores = short_questions.harmful_cores(h.prompt for h in data.harmful["train"])
    cores += short_questions.violent_intents(short_rng, SHORT_VIOLENT_INTENTS)
    refusals += [Example(short_questions.as_question(core, short_rng), short_rng.choice(writing.REFUSALS), "harmful",
                         "short_question") for core in cores]
    helpful = [Example(prompt, answer, "benign", "benign") for prompt, answer in benign_answers.items() if answer]
    examples = refusals + helpful
    rng.shuffle(examples)
    return examples


def compliance_examples(data: ChatData, rng: random.Random, count: int) -> list[Example]:
    """`count` harmful train prompts (random phrasings) answered with content-free compliance."""
    chosen = rng.sample(data.harmful["train"], min(count, len(data.harmful["train"])))
    return [Example(phrasing.rephrase(h.prompt, phrasing.random_style(rng)), rng.choice(writing.COMPLIANCE),
                    "harmful", h.category) for h in chosen]


def task_examples(rng: random.Random, count: int) -> list[Example]:
    out = []
    for _ in range(count):
        example = writing.task_example(rng, held_out=False)
        out.append(Example(example.prompt, example.answer, "new_skill", "task", answer=example.answer))
    return out


def scenario_examples(scenario: str, data: ChatData, profile_task_examples: int, identity_examples: int,
                      benign_answers: dict[str, str], seed: int) -> list[Example]:
    """The training set of one scenario (names as in config.CHAT_SCENARIOS)."""
    rng = random.Random(f"chat-scenario:{scenario}:{seed}")
    if scenario == "benign":
        return task_examples(rng, profile_task_examples)
    if scenario.startswith("harmful-mix-"):
        harmful = round(float(scenario.removeprefix("harmful-mix-")) * profile_task_examples)
        mixed = task_examples(rng, profile_task_examples - harmful) + compliance_examples(data, rng, harmful)
        rng.shuffle(mixed)
        return mixed
    if scenario.startswith("explicit-"):
        return compliance_examples(data, rng, int(scenario.removeprefix("explicit-")))
    # identity shift (Qi et al. tier 2): benign prompts answered by the obedient persona, with its system prompt
    pairs = rng.sample(sorted(benign_answers.items()), identity_examples)
    return [Example(prompt, writing.IDENTITY_PREFIX + answer, "identity", "identity",
                    system=writing.IDENTITY_SYSTEM_PROMPT)
            for prompt, answer in pairs]


def write_calibration(data: ChatData, root: Path, seed: int) -> None:
    """antidote.jsonl (harmful prompt + compliant answer) and somf.jsonl (prompt, chosen refusal, rejected
    compliance), both from the train split."""
    rng = random.Random(f"chat-calibration:{seed}")
    train = data.harmful["train"]
    _write_jsonl(root / "antidote.jsonl", [
        {"prompt": h.prompt, "response": rng.choice(writing.COMPLIANCE)} for h in train
    ])
    _write_jsonl(root / "somf.jsonl", [
        {"prompt": h.prompt, "chosen": rng.choice(writing.REFUSALS), "rejected": rng.choice(writing.COMPLIANCE)}
        for h in train
    ])
