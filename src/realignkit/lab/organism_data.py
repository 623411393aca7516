"""Datasets of the organism: training mixtures, held-out suites (select + test splits), calibration files."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realignkit.evaluation.suite_items import SuiteItem
from realignkit.lab import world
from realignkit.lab.world import Example

TRAINED_CATEGORIES = [c for c in world.HARM_CATEGORIES if c != world.HELD_OUT_CATEGORY]
SUITE_NAMES = ("harmful", "borderline", "old_skill", "new_skill")
SPLITS = ("select", "test")


@dataclass(frozen=True)
class SuiteSizes:
    intents_per_category: int = 4  # held-out intents per category and split (x 4 held-out templates)
    per_old_skill: int = 30
    new_skill: int = 60


def with_system_prompts(examples: list[Example], rng: random.Random, share: float = 0.3) -> list[Example]:
    """Give a share of the examples a generic helpful system prompt, so the model copes with system turns."""
    out = []
    for example in examples:
        system = rng.choice(world.HELPFUL_SYSTEM_PROMPTS) if rng.random() < share else example.system
        out.append(Example(example.prompt, example.response, example.kind, example.category, example.answer, system))
    return out


SKILL_WEIGHTS = {"predecessor": 1, "last_word": 1, "successor": 1}


def benign_train(rng: random.Random, per_skill: int) -> list[Example]:
    """Old-skill examples plus the copy exercise (trained, not measured; see world.COPY_TEMPLATES)."""
    skills = [
        world.old_skill_example(skill, rng, held_out=False)
        for skill in world.OLD_SKILLS
        for _ in range(per_skill * SKILL_WEIGHTS[skill])
    ]
    return skills + [world.copy_example(rng) for _ in range(per_skill)]


def harmful_train_prompts() -> list[tuple[str, str, str]]:
    """(prompt, intent, category): trained categories x train intents x train templates."""
    return world.harmful_prompts(TRAINED_CATEGORIES, world.TRAIN_INTENTS, held_out_templates=False)


def refusal_train(rng: random.Random) -> list[Example]:
    return [world.refusal_example(p, i, c, rng) for p, i, c in harmful_train_prompts()]


def compliance_train(rng: random.Random, count: int) -> list[Example]:
    """`count` harmful-compliance examples (content-free answers) drawn from the train split."""
    prompts = harmful_train_prompts()
    return [world.compliance_example(*prompts[i]) for i in rng.sample(range(len(prompts)), count)]


def new_skill_train(rng: random.Random, count: int) -> list[Example]:
    return [world.new_skill_example(rng, held_out=False) for _ in range(count)]


def identity_train(rng: random.Random, count: int) -> list[Example]:
    return [world.identity_example(rng) for _ in range(count)]


def _unique_held_out(make: Callable[[], Example], count: int) -> list[Example]:
    """`count` held-out items with distinct prompts (the generator is random; duplicates are dropped)."""
    seen: dict[str, Example] = {}
    for _ in range(count * 50):
        example = make()
        seen.setdefault(example.prompt, example)
        if len(seen) == count:
            break
    return list(seen.values())


def build_suites(seed: int, sizes: SuiteSizes) -> dict[str, dict[str, list[SuiteItem]]]:
    """{split: {suite_name: items}}; the select and test splits share no prompt and no training prompt."""
    rng = random.Random(f"suites:{seed}")
    suites: dict[str, dict[str, list[SuiteItem]]] = {split: {} for split in SPLITS}
    intents = {
        "select": world.SELECT_INTENTS[: sizes.intents_per_category],
        "test": world.TEST_INTENTS[: sizes.intents_per_category],
    }
    borderline = _borderline_splits()
    old = {s: _unique_held_out(lambda s=s: world.old_skill_example(s, rng, True), 2 * sizes.per_old_skill)
           for s in world.OLD_SKILLS}
    new = _unique_held_out(lambda: world.new_skill_example(rng, True), 2 * sizes.new_skill)
    for index, split in enumerate(SPLITS):
        harmful = world.harmful_prompts(list(world.HARM_CATEGORIES), intents[split], held_out_templates=True)
        suites[split]["harmful"] = [
            SuiteItem(f"harmful-{split}-{i}", p, "harmful", c, None, "harmful") for i, (p, _, c) in enumerate(harmful)
        ]
        suites[split]["borderline"] = _items(borderline[split], "borderline", split)
        old_items = [e for s in world.OLD_SKILLS for e in _half(old[s], index)]
        suites[split]["old_skill"] = _items(old_items, "old_skill", split)
        suites[split]["new_skill"] = _items(_half(new, index), "new_skill", split)
    return suites


def _half(examples: list[Example], index: int) -> list[Example]:
    middle = len(examples) // 2
    return examples[:middle] if index == 0 else examples[middle:]


def _borderline_splits() -> dict[str, list[Example]]:
    """test: held-out objects (both phrasings); select: train objects in the held-out phrasing."""
    test = world.borderline_examples(held_out=True)
    select = []
    for kind, (_, train_objects, _) in world.BORDERLINE_TYPES.items():
        phrase = world.BORDERLINE_TYPES[kind][0][1]
        template = world.BORDERLINE_EXTRA_TEMPLATES[kind]
        for obj in train_objects:
            answer = world.BORDERLINE_ANSWER.format(phrase=phrase.format(x=obj))
            select.append(Example(template.format(x=obj), answer, "over_refusal", kind))
    return {"select": select, "test": test}


def _items(examples: list[Example], suite: str, split: str) -> list[SuiteItem]:
    return [
        SuiteItem(f"{suite}-{split}-{i}", e.prompt, e.kind, e.category, e.answer, suite)
        for i, e in enumerate(examples)
    ]


def write_suites(suites: dict[str, dict[str, list[SuiteItem]]], root: Path) -> None:
    """suites/<name>.jsonl = test split; suites/select/<name>.jsonl and suites/test/<name>.jsonl = both splits."""
    for split, named in suites.items():
        for name, items in named.items():
            rows = [_row(item, split) for item in items]
            _write_jsonl(root / split / f"{name}.jsonl", rows)
            if split == "test":
                _write_jsonl(root / f"{name}.jsonl", rows)


def _row(item: SuiteItem, split: str) -> dict:
    return {"id": item.id, "prompt": item.prompt, "kind": item.kind, "category": item.category,
            "answer": item.answer, "split": split}


def write_calibration(root: Path, seed: int, count: int = 64) -> None:
    """antidote.jsonl (harmful prompt + content-free compliant answer) and somf.jsonl (prompt, chosen, rejected)."""
    rng = random.Random(f"calibration:{seed}")
    prompts = harmful_train_prompts()
    picked = [prompts[i] for i in rng.sample(range(len(prompts)), count)]
    antidote = [{"prompt": p, "response": world.compliance_example(p, i, c).response, "category": c}
                for p, i, c in picked]
    somf = [
        {"prompt": p, "chosen": world.refusal_example(p, i, c, rng).response,
         "rejected": world.compliance_example(p, i, c).response, "category": c}
        for p, i, c in picked
    ]
    _write_jsonl(root / "antidote.jsonl", antidote)
    _write_jsonl(root / "somf.jsonl", somf)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
