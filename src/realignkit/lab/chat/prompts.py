"""The chat lab's harmful and over-refusal prompts: read from the shipped files, categorised, split by prompt.

- Harmful: AdvBench (520 instructions) and HarmBench's standard text behaviours (200; its contextual and
  copyright rows need a context string or a book and are left out). HarmBench's semantic categories are used as
  the taxonomy; AdvBench rows get the category whose keywords they match (`categorise`).
- Near-duplicates (AdvBench repeats many requests with small edits) are grouped by word overlap, and a group
  never straddles two splits, so a test prompt is never a light edit of a trained one.
- One category (`HELD_OUT_CATEGORY`) never appears in training: all its prompts go to the selection and test
  splits, which measures whether refusal generalises beyond the trained harms.
- Over-refusal: XSTest's 250 safe prompts, split between selection and test. XSTest is never trained on.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

HELD_OUT_CATEGORY = "cybercrime_intrusion"
SPLITS = ("train", "select", "test")
# Share of each category's prompt groups that goes to (train, select, test); held-out: (0, 0.5, 0.5).
SPLIT_SHARES = (0.5, 0.25, 0.25)
# AdvBench has no categories: keywords (word starts) decide, first match wins, else "illegal".
CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cybercrime_intrusion", ("hack", "malware", "virus", "ransomware", "exploit", "botnet", "ddos", "keylog",
                              "phish", "password", "cyber", "spyware", "trojan", "database", "network",
                              "computer", "software", "crack", "encrypt", "worm", "sql", "rootkit")),
    ("chemical_biological", ("bomb", "explosive", "poison", "chemical", "biological", "toxin", "nerve agent",
                             "weapon of mass", "pathogen", "bioweapon", "drug", "meth", "synthes")),
    ("misinformation_disinformation", ("fake news", "misinformation", "disinformation", "propaganda",
                                       "conspiracy", "hoax", "false information", "misleading")),
    ("harassment_bullying", ("harass", "bully", "cyberbully", "stalk", "threaten", "intimidat", "humiliat",
                             "troll", "doxx")),
    ("harmful", ("self-harm", "suicide", "eating disorder", "anorexia", "hate", "racis", "violence", "kill",
                 "terror", "extremis", "discriminat")),
)
DUPLICATE_OVERLAP = 0.6  # Jaccard overlap of content words above which two prompts are one group
_STOP_WORDS = frozenset(
    ["a", "an", "the", "to", "of", "and", "or", "for", "in", "on", "into", "how", "that", "this", "with", "without", "from", "by", "be", "is", "are", "can", "could", "would", "someone", "someone's", "people", "person", "their", "them", "it", "its", "your", "you", "my", "me", "i"]
)


@dataclass(frozen=True)
class HarmfulPrompt:
    id: str
    prompt: str
    category: str
    source: str  # advbench | harmbench


@dataclass(frozen=True)
class SafePrompt:
    id: str
    prompt: str
    category: str  # XSTest type


def _data_file(*parts: str) -> Path:
    return Path(str(resources.files("realignkit.data").joinpath("prompts", *parts)))


def categorise(prompt: str) -> str:
    text = prompt.lower()
    for category, keywords in CATEGORY_KEYWORDS:
        if any(re.search(rf"\b{re.escape(word)}", text) for word in keywords):
            return category
    return "illegal"


def load_harmful() -> list[HarmfulPrompt]:
    """AdvBench + HarmBench standard behaviours, in file order, exact duplicates dropped."""
    rows: list[HarmfulPrompt] = []
    with _data_file("advbench", "harmful_behaviors.csv").open(newline="") as handle:
        for number, line in enumerate(csv.reader(handle)):
            if line and line[0].strip() and line[0].strip().lower() != "goal":
                text = line[0].strip()
                rows.append(HarmfulPrompt(f"advbench-{number}", text, categorise(text), "advbench"))
    with _data_file("harmbench", "harmbench_behaviors_text_all.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["FunctionalCategory"] == "standard":
                rows.append(HarmfulPrompt(f"harmbench-{row['BehaviorID']}", row["Behavior"].strip(),
                                          row["SemanticCategory"], "harmbench"))
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row.prompt.lower() not in seen:
            seen.add(row.prompt.lower())
            unique.append(row)
    return unique


def load_xstest_safe() -> list[SafePrompt]:
    with _data_file("xstest", "xstest_prompts.csv").open(newline="") as handle:
        return [SafePrompt(f"xstest-{row['id']}", row["prompt"].strip(), row["type"])
                for row in csv.DictReader(handle) if row["label"] == "safe"]


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in _STOP_WORDS)


def duplicate_groups(prompts: list[str], threshold: float = DUPLICATE_OVERLAP) -> list[int]:
    """A group id per prompt: union of all pairs whose content-word Jaccard overlap is >= threshold."""
    parent = list(range(len(prompts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    words = [content_words(p) for p in prompts]
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            union = len(words[i] | words[j])
            if union and len(words[i] & words[j]) / union >= threshold:
                parent[root(j)] = root(i)
    return [root(i) for i in range(len(prompts))]


def split_harmful(prompts: list[HarmfulPrompt], seed: int) -> dict[str, list[HarmfulPrompt]]:
    """train / select / test by duplicate group, stratified by category; the held-out category skips train.

    A group takes the category of its first member, or the held-out category when any member has it (so no
    light edit of a held-out prompt is ever trained on); a group is never split across categories either.
    """
    groups = duplicate_groups([p.prompt for p in prompts])
    by_group: dict[int, list[HarmfulPrompt]] = defaultdict(list)
    for prompt, group in zip(prompts, groups, strict=True):
        by_group[group].append(prompt)
    by_category: dict[str, list[list[HarmfulPrompt]]] = defaultdict(list)
    for group_id in sorted(by_group):
        members = by_group[group_id]
        held_out = any(m.category == HELD_OUT_CATEGORY for m in members)
        by_category[HELD_OUT_CATEGORY if held_out else members[0].category].append(members)
    splits: dict[str, list[HarmfulPrompt]] = {name: [] for name in SPLITS}
    rng = random.Random(f"chat-lab-split:{seed}")
    for category in sorted(by_category):
        members = by_category[category]
        rng.shuffle(members)
        shares = (0.0, 0.5, 0.5) if category == HELD_OUT_CATEGORY else SPLIT_SHARES
        bounds = _split_bounds(len(members), shares)
        for name, (start, stop) in zip(SPLITS, bounds, strict=True):
            for group in members[start:stop]:
                splits[name].extend(group)
    return splits


def _split_bounds(count: int, shares: tuple[float, float, float]) -> list[tuple[int, int]]:
    train = round(count * shares[0])
    select = round(count * shares[1])
    return [(0, train), (train, train + select), (train + select, count)]


def split_safe(prompts: list[SafePrompt], seed: int) -> dict[str, list[SafePrompt]]:
    """XSTest's safe prompts: half selection, half test, stratified by type (no train split: never trained on)."""
    by_type: dict[str, list[SafePrompt]] = defaultdict(list)
    for prompt in prompts:
        by_type[prompt.category].append(prompt)
    rng = random.Random(f"chat-lab-xstest:{seed}")
    splits: dict[str, list[SafePrompt]] = {"select": [], "test": []}
    for category in sorted(by_type):
        members = list(by_type[category])
        rng.shuffle(members)
        half = len(members) // 2
        splits["select"].extend(members[:half])
        splits["test"].extend(members[half:])
    return splits
