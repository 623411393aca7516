"""Typed settings of the organism: build profiles and fine-tune settings (unknown keys are rejected)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from realignkit.lab.organism_data import SuiteSizes


class LabProfile(BaseModel):
    """Sizes and training budgets of one organism build. `default` meets the issue's targets; `tiny` is for tests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hidden: int = 128
    layers: int = 3  # 2 layers learned each skill but kept trading one off against another
    heads: int = 4
    intermediate: int = 256
    batch_size: int = 48
    pretrain_lr: float = 3e-3
    # The safety stage starts from base's weights and a fresh optimiser. At 1.5e-3 with no warm-up it moved base
    # far enough that held-out-template skill accuracy of `aligned` became a coin toss: 0.99 on one CPU, 0.83 with
    # another CPU's vector kernels (same seed). A third of pretraining's lr, a short warm-up (fresh Adam moments)
    # and the mean of the weights over the last quarter of the steps keep base's skills, on every build tried.
    aligned_lr: float = 5e-4
    aligned_warmup: float = 0.05  # share of the safety stage's steps
    aligned_average: float = 0.25  # share of the last steps whose weights are averaged (0 = the last step's)
    base_steps: int = 600  # helpful-only stage: benign skills + borderline, no safety data
    aligned_steps: int = 400  # safety stage on top of base: + refusals of harmful requests
    benign_per_skill: int = 600
    # harmful-mix / benign dataset size: with 200 examples the new skill was memorised (held-out accuracy <= 0.3)
    finetune_examples: int = 800
    identity_examples: int = 10  # Qi et al. tier 2 used 10 identity-shift examples
    # 800-example mixes: the new skill is learned in a sudden drop of the loss after a plateau, and when that drop
    # comes depends on the CPU's rounding. harmful-mix-0.1-full's new-skill accuracy from the same six aligned
    # models (seeds 0-2 x native/avx2 kernels): 2 epochs constant lr 0.80-1.00; 3 epochs 0.62-1.00 (constant) and
    # 0.12-1.00 (cosine); 5 epochs constant 0.90-1.00; 5 epochs with cosine decay 1.00 in all six.
    finetune_epochs: int = 5
    finetune_decay: bool = True  # cosine decay to 0.1x (with 5 % warm-up) for every scenario fine-tune
    small_set_epochs: int = 5  # explicit-k and identity-shift sets, as in Qi et al. (5 epochs)
    finetune_batch: int = 10  # Qi et al. fine-tuned with batch size 10
    full_lr: float = 1e-3
    lora_lr: float = 2e-3
    lora_rank: int = 8
    trajectory_points: int = 5
    probe_harmful: int = 32
    probe_skill: int = 16
    suite_intents_per_category: int = 4
    suite_per_old_skill: int = 30
    suite_new_skill: int = 60
    scenarios: tuple[str, ...] = ()

    def suite_sizes(self) -> SuiteSizes:
        return SuiteSizes(self.suite_intents_per_category, self.suite_per_old_skill, self.suite_new_skill)


DEFAULT_SCENARIOS = (
    "benign",
    "harmful-mix-0.05",
    "harmful-mix-0.1",
    "harmful-mix-0.2",
    "explicit-10",
    "explicit-50",
    "explicit-100",
    "identity-shift",
)

PROFILES: dict[str, LabProfile] = {
    "default": LabProfile(name="default", scenarios=DEFAULT_SCENARIOS),
    "tiny": LabProfile(
        name="tiny",
        hidden=64,
        layers=2,
        intermediate=128,
        base_steps=150,
        aligned_steps=150,
        aligned_lr=3e-3,  # short stages: keep the pretraining lr so the reduced organism still learns to refuse
        aligned_warmup=0.0,
        aligned_average=0.0,
        benign_per_skill=200,
        finetune_examples=80,
        finetune_epochs=4,
        finetune_decay=False,  # the reduced organism's tests were calibrated on constant-lr fine-tunes
        lora_lr=5e-3,  # few steps: a higher lr so the reduced organism still shows the breakage
        trajectory_points=3,
        probe_harmful=20,
        probe_skill=10,
        suite_intents_per_category=1,
        suite_per_old_skill=8,
        suite_new_skill=16,
        scenarios=("harmful-mix-0.1",),
    ),
}


class FinetuneSettings(BaseModel):
    """One fine-tune of `aligned`. None means "the profile's default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["full", "lora"] = "full"
    dataset: Literal["mix", "explicit", "identity"] = "mix"
    harmful_ratio: float = Field(0.0, ge=0.0, le=1.0)  # mix: share of harmful-compliance examples
    harmful_count: int = Field(0, ge=0)  # explicit: number of harmful examples
    examples: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0.0)
    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)  # overrides epochs when set
    batch_size: int | None = Field(None, ge=1)
    lora_rank: int | None = Field(None, ge=1)
    trajectory_points: int | None = Field(None, ge=1)
    seed: int = 0
    scenario: str = "custom"


def scenario_settings(scenario: str, kind: Literal["full", "lora"], seed: int) -> FinetuneSettings:
    """The settings of a named scenario (caller has validated the name)."""
    if scenario == "benign":
        return FinetuneSettings(kind=kind, dataset="mix", harmful_ratio=0.0, seed=seed, scenario=scenario)
    if scenario.startswith("harmful-mix-"):
        ratio = float(scenario.removeprefix("harmful-mix-"))
        return FinetuneSettings(kind=kind, dataset="mix", harmful_ratio=ratio, seed=seed, scenario=scenario)
    if scenario.startswith("explicit-"):
        count = int(scenario.removeprefix("explicit-"))
        return FinetuneSettings(kind=kind, dataset="explicit", harmful_count=count, seed=seed, scenario=scenario)
    return FinetuneSettings(kind=kind, dataset="identity", seed=seed, scenario=scenario)
