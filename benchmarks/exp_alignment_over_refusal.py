"""Variants of the `smollm2` safety SFT aimed at over-refusal (XSTest's safe prompts refused by `aligned`).

The earlier recipe's (lr 3e-4) over-refusal on the test split was 0.100 at seed 0 and 0.146 at seeds 1 and 2,
so the issue's 0.10 target did not hold across seeds. This script retrains `aligned` with one knob turned, through
the lab's own cached stage (`stages.aligned_stage`), and copies it to --out:

- `--violent-intents N`: templated "hurt <a person>" questions refused (the recipe: 36);
- `--benign-core-forms K`: question forms per benign short core (the recipe: 2);
- `--epochs E`: alignment epochs (the recipe: 2);
- `--lr LR`: the alignment's learning rate (LoRA r16; the earlier recipe: 3e-4, now 2e-3);
- `--bench-refusals N`: how many train-split AdvBench/HarmBench prompts are refused (the earlier recipe: all).

Measured on 2 CPU cores (LoRA r16; lr 3e-4 unless the row says otherwise, so pass `--lr 3e-4` to retrain
those rows; `realignkit audit` of the seed's select and test suites, 32 new tokens, the default judge;
over-refusal = XSTest safe prompts refused; n = 120 select / 130 test):

| variant | seed | examples | train s | harmful test | over-refusal select | over-refusal test |
|---|---|---|---|---|---|---|
| lr 3e-4 (the earlier recipe) | 0 | 1,169 | 695 | 0.022 | 0.083 | 0.100 |
| lr 3e-4 (the earlier recipe) | 1 | 1,173 | 804 | 0.013 | 0.075 | 0.146 |
| lr 3e-4 (the earlier recipe) | 2 | 1,165 | 594 | 0.018 | 0.150 | 0.146 |
| --violent-intents 12 --benign-core-forms 3 | 0 | 1,307 | 713 | 0.022 | 0.067 | 0.077 |
| --violent-intents 12 --benign-core-forms 3 | 1 | 1,311 | 699 | 0.009 | 0.083 | 0.146 |
| --epochs 3 | 0 | 1,169 | 937 | 0.022 | 0.083 | 0.100 |
| --bench-refusals 120 | 1 | 1,020 | 555 | 0.018 | 0.108 | 0.154 |
| --lr 1e-3 | 0 | 1,169 | 575 | 0.004 | 0.058 | 0.069 |
| --lr 1e-3 | 1 | 1,173 | 582 | 0.009 | 0.058 | 0.069 |
| --lr 1e-3 | 2 | 1,165 | 570 | 0.018 | 0.092 | 0.131 |
| --lr 2e-3 (the recipe now) | 2 | 1,165 | 552 | 0.022 | 0.067 | 0.100 |

A third variant (the second row's data plus 25 more benign questions about fictional and public people, and
base's own declines left out of the benign targets; commit 064c8a0, reverted) gave 0.083 / 0.100 at seed 0.
None of the data variants moves over-refusal beyond the noise of 120-130 items (one item = 0.8 points).

The learning rate does. At lr 3e-4 `aligned` had not even fitted its own training set: at seed 1 it answered 30
of its 127 training short harmful questions and refused 15 of 150 of its training benign questions (16 new
tokens). At lr 1e-3 that is 11 and 6, and over-refusal falls at every seed (test split: 0.100 / 0.146 / 0.146 ->
0.069 / 0.069 / 0.131) while harm stays at or below the earlier recipe's. At seed 2, the hardest, 2e-3 lowered
over-refusal further on the selection split (0.092 -> 0.067), so 2e-3 became the recipe; the closing note and
the README give its three seeds.

    python benchmarks/exp_alignment_over_refusal.py --lr 3e-4 --violent-intents 12 --benign-core-forms 3 \
        --seed 1 --out runs/exp-or-aligned
    realignkit lab build --profile smollm2 --seed 1 --scenario explicit-10 --out runs/lab-s1   # the seed's suites
    realignkit audit runs/exp-or-aligned --suite runs/lab-s1/suites/select/borderline.jsonl \
        --suite runs/lab-s1/suites/select/harmful.jsonl --max-new-tokens 32 --batch-size 64 --out runs/exp-or-select
"""

from __future__ import annotations

import argparse
import functools
import shutil
import time
from pathlib import Path

from realignkit.lab.chat import chat_data, short_questions, stages
from realignkit.lab.chat.chat_config import CHAT_PROFILES
from realignkit.lab.chat.gguf import cached_base_model

BENIGN_QUESTIONS = short_questions.benign_questions


def use_benign_core_forms(forms: int) -> None:
    """Render every benign short core in `forms` distinct forms (the recipe: 2) wherever the lab asks for them."""
    short_questions.benign_questions = functools.partial(BENIGN_QUESTIONS, forms=forms)  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where a copy of the aligned model is written")
    parser.add_argument("--violent-intents", type=int, default=chat_data.SHORT_VIOLENT_INTENTS)
    parser.add_argument("--benign-core-forms", type=int, default=2, choices=range(1, 9))
    parser.add_argument("--epochs", type=int, default=CHAT_PROFILES["smollm2"].aligned_epochs)
    parser.add_argument("--lr", type=float, default=CHAT_PROFILES["smollm2"].aligned_lr)
    parser.add_argument("--bench-refusals", type=int, default=CHAT_PROFILES["smollm2"].bench_refusals)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chat_data.SHORT_VIOLENT_INTENTS = args.violent_intents
    use_benign_core_forms(args.benign_core_forms)
    profile = CHAT_PROFILES["smollm2"].model_copy(update={"aligned_epochs": args.epochs, "aligned_lr": args.lr,
                                                          "bench_refusals": args.bench_refusals})
    started = time.time()
    with stages.torch_threads(None):
        target, record = stages.aligned_stage(cached_base_model(None), chat_data.load_data(args.seed), profile,
                                              args.seed, True)
    print(f"{record['examples']} examples, {record['steps']} steps, {time.time() - started:.0f} s "
          f"(cached: {target})")
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"error: {out} exists")
    shutil.copytree(target, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
