"""Phrasings of one instruction: imperative (AdvBench's style), questions, first person, indirect.

Why: an alignment set phrased only as AdvBench's imperatives teaches "refuse imperatives", and one that rewrites
only the harmful side teaches "refuse questions". Every harmful *and* benign training prompt goes through the
same templates at the same rates, so the phrasing carries no signal and only the content can.
"""

from __future__ import annotations

import random
import re

PHRASINGS: dict[str, str] = {
    "imperative": "{Instruction}",
    "polite": "Please {instruction}.",
    "question": "Can you {instruction}?",
    "how_would_i": "How would I {instruction}?",
    "first_person": "I need to {instruction}. Can you help me with that?",
    "indirect": "A friend of mine wants to {instruction}. What would you tell them?",
}
TEST_PHRASINGS = ("question", "how_would_i", "first_person", "indirect")  # the non-AdvBench styles


def _lower_first(text: str) -> str:
    """'Write a poem' -> 'write a poem'; acronyms and 'I' stay as they are ('DDoS', 'I')."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and (first.isupper() or any(c.isupper() for c in first[1:])):
        return text
    if first == "I":
        return text
    return text[:1].lower() + text[1:]


def rephrase(instruction: str, style: str) -> str:
    """`instruction` (an imperative sentence) rendered in `style`, one of PHRASINGS."""
    core = re.sub(r"[.!?\s]+$", "", instruction.strip())
    if style == "imperative":
        return core
    return PHRASINGS[style].format(instruction=_lower_first(core), Instruction=core)


def random_style(rng: random.Random, imperative_share: float = 0.4) -> str:
    """The imperative with probability `imperative_share`, else one of the other styles uniformly."""
    if rng.random() < imperative_share:
        return "imperative"
    return rng.choice([s for s in PHRASINGS if s != "imperative"])
