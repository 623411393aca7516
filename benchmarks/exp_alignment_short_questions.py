"""Experiment, not adopted: do short direct harmful questions in the safety SFT make refusal reach XSTest's
unsafe prompts?

Why: the `smollm2` alignment trains 103 short benign questions with trigger words ("How do I kill time on a
train?") answered, and only long AdvBench/HarmBench instructions refused; `aligned` then answers 0.695 of XSTest's
200 unsafe prompts, most of them short questions. Here every train-split harmful prompt with a "how to X" core
also appears as "How do I X?" / "How can I X?" / "What's the best way to X?" answered with a refusal (114 more
examples); the recipe is otherwise `smollm2`'s (LoRA r16, 2 epochs, lr 3e-4, seed 0).

Measured (2 CPU cores, 418 s of training): XSTest unsafe answered 0.695 -> 0.205, but XSTest safe refused
0.072 -> 0.388 (test borderline suite 0.092 -> 0.385); harmful test split 0.018, capitals/facts 0.657 unchanged.
The blind spot is the form, and this fix overshoots. XSTest only measures here; it is never trained on.

    python benchmarks/exp_alignment_short_questions.py --out runs/exp-shortq-aligned
    realignkit audit runs/exp-shortq-aligned --suite xstest:src/realignkit/data/prompts/xstest/xstest_prompts.csv \
        --max-new-tokens 32 --batch-size 64 --out runs/exp-shortq-xstest
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

from realignkit.lab.chat import chat_data, stages, writing
from realignkit.lab.chat.chat_config import CHAT_PROFILES
from realignkit.lab.chat.gguf import cached_base_model
from realignkit.lab.world import Example

HOW_TO = re.compile(r"\bhow to\s+(.+?)[.!?]*$", re.IGNORECASE)
FORMS = ("How do I {}?", "How can I {}?", "What's the best way to {}?")


def short_questions(data: chat_data.ChatData, rng: random.Random) -> list[Example]:
    """A refusal for the "how to X" core of every train-split harmful prompt that has one, as a short question."""
    out = []
    for harmful in data.harmful["train"]:
        match = HOW_TO.search(harmful.prompt)
        if match:
            out.append(Example(rng.choice(FORMS).format(match.group(1)), rng.choice(writing.REFUSALS), "harmful",
                               harmful.category))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where the aligned model is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=None, help="use this many short questions (default: all 114)")
    args = parser.parse_args()
    profile = CHAT_PROFILES["smollm2"]
    with stages.torch_threads(None):
        base_dir = cached_base_model(None)
        data = chat_data.load_data(args.seed)
        answers = stages.benign_answers(base_dir, chat_data.benign_prompts(args.seed, profile.benign_styles),
                                        profile, True)
        rng = random.Random("shortq")
        extra = short_questions(data, rng)
        if args.count is not None:
            extra = rng.sample(extra, min(args.count, len(extra)))
        examples = chat_data.alignment_examples(data, answers, args.seed) + extra
        rng.shuffle(examples)
        print(f"{len(extra)} short harmful questions added to {len(examples) - len(extra)} examples")
        model, tokenizer = stages.load_model(base_dir)
        model = stages.trainable(model, "lora", profile.aligned_lora_rank, args.seed)
        started = time.time()
        run = stages.SftRun(lr=profile.aligned_lr, epochs=profile.aligned_epochs, batch=profile.batch_size,
                            seed=args.seed)
        stages.sft(model, tokenizer, examples, run, desc="aligned+short questions", progress=True)
        print(f"trained in {time.time() - started:.0f} s")
        stages.save_full(model.merge_and_unload(), tokenizer, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
