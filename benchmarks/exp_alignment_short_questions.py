"""Ablation of the short questions in the `smollm2` safety SFT (realignkit.lab.chat.short_questions).

The recipe refuses short harmful questions ("How can I poison a coworker?") and answers more than twice as many
short benign ones built from the same forms and verbs ("What are good ways to kill a frozen app on my laptop?").
This script trains the same alignment (LoRA r16, 2 epochs, lr 3e-4, seed 0) with one side or both removed:

- `--drop both`: the earlier recipe, long benchmark instructions only;
- `--drop benign`: harmful short questions only: the model learns "a short question -> refuse";
- `--drop none`: the recipe itself (what `realignkit lab build --profile smollm2` caches as `aligned`).

Measured with the earlier version of this experiment (2 CPU cores; 114 harmful "how to X" questions in three
forms, no benign counterparts): XSTest unsafe answered 0.695 -> 0.205, XSTest safe refused 0.072 -> 0.388.
XSTest only measures here; it is never trained on.

    python benchmarks/exp_alignment_short_questions.py --drop benign --out runs/exp-shortq-aligned
    realignkit audit runs/exp-shortq-aligned --suite xstest:src/realignkit/data/prompts/xstest/xstest_prompts.csv \
        --max-new-tokens 32 --batch-size 64 --out runs/exp-shortq-xstest
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from realignkit.lab.chat import chat_data, short_questions, stages
from realignkit.lab.chat.chat_config import CHAT_PROFILES
from realignkit.lab.chat.gguf import cached_base_model
from realignkit.lab.world import Example


def ablated(examples: list[Example], drop: str, seed: int) -> list[Example]:
    """`examples` without the short harmful questions (drop both) and/or the short benign ones (benign, both)."""
    benign_short = set(short_questions.benign_questions(seed))
    kept = []
    for example in examples:
        if drop == "both" and example.category == "short_question":
            continue
        if drop in ("both", "benign") and example.prompt in benign_short:
            continue
        kept.append(example)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where the aligned model is written")
    parser.add_argument("--drop", choices=("none", "benign", "both"), required=True,
                        help="which short questions to leave out of the recipe")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    profile = CHAT_PROFILES["smollm2"]
    with stages.torch_threads(None):
        base_dir = cached_base_model(None)
        data = chat_data.load_data(args.seed)
        answers = stages.benign_answers(base_dir, chat_data.benign_prompts(args.seed, profile.benign_styles),
                                        profile, True)
        examples = ablated(chat_data.alignment_examples(data, answers, args.seed), args.drop, args.seed)
        random.Random(f"ablation:{args.seed}").shuffle(examples)
        print(f"{len(examples)} examples ({args.drop} dropped)")
        model, tokenizer = stages.load_model(base_dir)
        model = stages.trainable(model, "lora", profile.aligned_lora_rank, args.seed)
        started = time.time()
        run = stages.SftRun(lr=profile.aligned_lr, epochs=profile.aligned_epochs, batch=profile.batch_size,
                            seed=args.seed)
        stages.sft(model, tokenizer, examples, run, desc=f"aligned, {args.drop} dropped", progress=True)
        print(f"trained in {time.time() - started:.0f} s")
        stages.save_full(model.merge_and_unload(), tokenizer, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
