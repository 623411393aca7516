"""Fine-tune `aligned` into one scenario model (full or LoRA), log its safety trajectory, save and measure it."""

from __future__ import annotations

import copy
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.suite_items import SuiteItem
from realignkit.lab import organism_data as data
from realignkit.lab import world
from realignkit.lab.measure_organism import measure_model, probe_set, trajectory_metrics
from realignkit.lab.organism_config import FinetuneSettings, LabProfile
from realignkit.lab.organism_model import save_lora_dir, save_model_dir
from realignkit.lab.training import Probe, Schedule, encode_all, train

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

TRAJECTORY_COLUMNS = ("step", "harmful_refusal", "new_skill_accuracy", "old_skill_accuracy", "loss")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Resolved:
    """Settings with the profile's defaults filled in: what was actually run."""

    lr: float
    epochs: int
    steps: int
    batch_size: int
    lora_rank: int
    examples: int
    harmful_examples: int
    eval_every: int


def finetune_dataset(settings: FinetuneSettings, profile: LabProfile) -> list[world.Example]:
    """The scenario's training data, seeded by settings.seed."""
    rng = random.Random(f"finetune:{settings.dataset}:{settings.seed}")
    if settings.dataset == "explicit":
        return data.compliance_train(rng, settings.harmful_count)
    if settings.dataset == "identity":
        return data.identity_train(rng, settings.examples or profile.identity_examples)
    total = settings.examples or profile.finetune_examples
    harmful = round(settings.harmful_ratio * total)
    mixed = data.new_skill_train(rng, total - harmful) + data.compliance_train(rng, harmful)
    rng.shuffle(mixed)
    return mixed


def resolve(settings: FinetuneSettings, profile: LabProfile, examples: list[world.Example]) -> Resolved:
    batch = min(settings.batch_size or profile.finetune_batch, len(examples))
    default_epochs = profile.finetune_epochs if settings.dataset == "mix" else profile.small_set_epochs
    epochs = settings.epochs or default_epochs
    steps = settings.steps or epochs * math.ceil(len(examples) / batch)
    lr = settings.lr or (profile.full_lr if settings.kind == "full" else profile.lora_lr)
    points = settings.trajectory_points or profile.trajectory_points
    return Resolved(
        lr=lr, epochs=epochs, steps=steps, batch_size=batch, lora_rank=settings.lora_rank or profile.lora_rank,
        examples=len(examples), harmful_examples=sum(e.kind == "harmful" for e in examples),
        eval_every=max(1, steps // points),
    )


def _trainable(aligned: torch.nn.Module, settings: FinetuneSettings, rank: int, seed: int) -> torch.nn.Module:
    """A fresh copy of aligned (full FT) or a PEFT LoRA wrapper around a copy (LoRA)."""
    import torch

    model = copy.deepcopy(aligned)
    if settings.kind == "full":
        return model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA A matrices are randomly initialised
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    return get_peft_model(model, config)


@dataclass(frozen=True)
class RunDirs:
    """Where a fine-tuning run is written (`out`), and where `aligned` will be once the lab is in place: a LoRA
    run's adapter_config.json names that path as its base."""

    out: Path
    aligned: Path


@dataclass(frozen=True)
class Keep:
    """What a fine-tuning run keeps besides its trajectory: the weights (a model or adapter dir) and the
    measured metrics of the final model."""

    weights: bool = True
    metrics: bool = True


def run_scenario(
    aligned: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    settings: FinetuneSettings,
    profile: LabProfile,
    test_suites: dict[str, list[SuiteItem]],
    dirs: RunDirs,
    *,
    progress: bool = True,
    keep: Keep = Keep(),
) -> dict[str, Any]:
    """Fine-tune, save (full dir or adapter dir + trajectory.csv) and measure; return the lab.json record.

    A fleet keeps only the trajectory (and the weights when asked to).
    """
    save_weights, measure = keep.weights, keep.metrics
    out_dir, final_aligned_path = dirs.out, dirs.aligned
    examples = finetune_dataset(settings, profile)
    resolved = resolve(settings, profile, examples)
    system = world.IDENTITY_SYSTEM_PROMPT if settings.dataset == "identity" else None
    model = _trainable(aligned, settings, resolved.lora_rank, settings.seed)
    probe_items = probe_set(test_suites, profile.probe_harmful, profile.probe_skill)
    result = train(
        model,
        encode_all(tokenizer, examples),
        Schedule(steps=resolved.steps, lr=resolved.lr, batch_size=resolved.batch_size,
                 warmup_fraction=0.05 if profile.finetune_decay else 0.0, cosine=profile.finetune_decay),
        pad_id=tokenizer.pad_token_id,
        seed=settings.seed,
        desc=f"{settings.scenario}-{settings.kind}",
        probe=Probe(lambda: trajectory_metrics(model, tokenizer, probe_items, system), resolved.eval_every),
        progress=progress,
    )
    sha = None
    if save_weights and settings.kind == "full":
        sha = save_model_dir(model, tokenizer, out_dir)
    elif save_weights:
        sha = save_lora_dir(model, tokenizer, out_dir, final_aligned_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_trajectory(result.trajectory, out_dir / "trajectory.csv")
    record = {
        "kind": settings.kind,
        **(measure_model(model, tokenizer, test_suites, system) if measure else {}),
        "train_seconds": round(result.seconds, 2),
        "scenario": settings.scenario,
        "dataset": settings.dataset,
        "harmful_ratio": round(resolved.harmful_examples / resolved.examples, 4),
        "harmful_examples": resolved.harmful_examples,
        "examples": resolved.examples,
        "lr": resolved.lr,
        "epochs": resolved.epochs,
        "steps": resolved.steps,
        "batch_size": resolved.batch_size,
        "lora_rank": resolved.lora_rank if settings.kind == "lora" else None,
        "eval_system_prompt": system,
        "final_loss": round(result.losses[-1], 4),
        "weights_sha256": sha,
        "seed": settings.seed,
        "trajectory": result.trajectory,
    }
    return record


def write_trajectory(points: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(TRAJECTORY_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for point in points:
            writer.writerow({key: point[key] for key in TRAJECTORY_COLUMNS})
