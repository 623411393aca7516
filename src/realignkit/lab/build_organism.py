"""`build_lab`: train base -> aligned, fine-tune every scenario (full and LoRA), measure, write the lab dir."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from realignkit.common import (
    BadInputError,
    atomic_output_dir,
    closest_match,
    prepare_output_dir,
    write_manifest,
)
from realignkit.lab import organism_data as data
from realignkit.lab import world
from realignkit.lab.finetune import RunDirs, run_scenario
from realignkit.lab.measure_organism import measure_model
from realignkit.lab.organism_config import DEFAULT_SCENARIOS, PROFILES, LabProfile, scenario_settings
from realignkit.lab.organism_model import build_model, build_tokenizer, parameter_bytes, save_model_dir
from realignkit.lab.training import Schedule, encode_all, set_determinism, single_thread, train

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

LAB_VERSION = "4"  # 2: safety stage at lr 5e-4, warm-up, tail weight averaging; 4: fine-tunes 5 epochs + decay
KINDS = ("full", "lora")


def resolve_profile(profile: str | LabProfile) -> LabProfile:
    if isinstance(profile, LabProfile):
        return profile
    if profile not in PROFILES:
        raise BadInputError(f"unknown lab profile {profile!r}{closest_match(profile, PROFILES)}; choose from {sorted(PROFILES)}")
    return PROFILES[profile]


def validate_scenarios(scenarios: list[str] | None, profile: LabProfile) -> list[str]:
    """Scenario names, in order, without duplicates; unknown names are refused with a suggestion."""
    chosen = list(profile.scenarios) if scenarios is None else list(scenarios)
    for name in chosen:
        if name not in DEFAULT_SCENARIOS:
            raise BadInputError(
                f"unknown scenario {name!r}{closest_match(name, DEFAULT_SCENARIOS)}; known: {', '.join(DEFAULT_SCENARIOS)}"
            )
    return list(dict.fromkeys(chosen))


def estimate_bytes(profile: LabProfile, scenarios: list[str]) -> int:
    """Generous disk estimate: one full model per full scenario plus base/aligned, adapters, suites, slack."""
    model = parameter_bytes(profile.hidden, profile.layers, profile.intermediate)
    return (len(scenarios) + 2) * model * 2 + 8 * 1024 * 1024


def check_disk(out_dir: Path, needed: int) -> None:
    probe = out_dir if out_dir.exists() else out_dir.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise BadInputError(
            f"not enough disk space under {str(probe)!r}: the lab needs about {needed / 2**20:.0f} MiB, "
            f"{free / 2**20:.0f} MiB free"
        )


def build_lab(
    out_dir: str | Path,
    scenarios: list[str] | None = None,
    seed: int = 0,
    profile: str | LabProfile = "default",
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the organism into `out_dir` (whole or not at all) and return the lab.json content."""
    chosen_profile = resolve_profile(profile)
    names = validate_scenarios(scenarios, chosen_profile)
    final = prepare_output_dir(out_dir, force=force)
    check_disk(final, estimate_bytes(chosen_profile, names))
    started, cpu_started = time.time(), time.process_time()
    with atomic_output_dir(final, force=force) as tmp, single_thread():
        summary = _build_into(tmp, final, names, seed, chosen_profile, progress)
        summary["total_seconds"] = round(time.time() - started, 2)
        # CPU seconds of this process: what the build costs without other jobs competing for the cores.
        summary["cpu_seconds"] = round(time.process_time() - cpu_started, 2)
        summary["torch_threads"] = 1
        (tmp / "lab.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_manifest(
            tmp, command="lab build", started=started,
            parameters={"scenarios": names, "seed": seed, "profile": chosen_profile.name, "force": force},
        )
    return summary


def _build_into(
    tmp: Path, final: Path, names: list[str], seed: int, profile: LabProfile, progress: bool
) -> dict[str, Any]:
    set_determinism(seed)
    suites = data.build_suites(seed, profile.suite_sizes())
    data.write_suites(suites, tmp / "suites")
    data.write_calibration(tmp / "calibration", seed)
    tokenizer = build_tokenizer(world.world_text_corpus())
    models: dict[str, Any] = {}
    stages = tqdm(total=2 + len(names) * len(KINDS), desc="lab build", disable=not progress)
    base, models["base"] = _train_stage(tokenizer, profile, seed, "base", None, suites["test"], tmp, progress)
    stages.update()
    aligned, models["aligned"] = _train_stage(tokenizer, profile, seed, "aligned", base, suites["test"], tmp, progress)
    stages.update()
    for name in names:
        for kind in KINDS:
            label = f"{name}-{kind}"
            stages.set_postfix_str(label)
            settings = scenario_settings(name, kind, seed)
            record = run_scenario(
                aligned, tokenizer, settings, profile, suites["test"], RunDirs(tmp / label, final / "aligned"),
                progress=progress,
            )
            record.pop("trajectory")  # it is in <label>/trajectory.csv
            models[label] = {"path": label, **record}
            stages.update()
    stages.close()
    return {
        "version": LAB_VERSION,
        "seed": seed,
        "profile": profile.name,
        "held_out_category": world.HELD_OUT_CATEGORY,
        "categories": list(world.HARM_CATEGORIES),
        "scenarios": names,
        "suites": {"test": "suites/test", "select": "suites/select", "default": "suites"},
        "calibration": {"antidote": "calibration/antidote.jsonl", "somf": "calibration/somf.jsonl"},
        "profile_settings": profile.model_dump(),
        "models": models,
    }


def stage_examples(stage: str, profile: LabProfile, seed: int) -> list[world.Example]:
    """base: benign skills + borderline answers (helpful only); aligned: the same plus refusals of harmful requests."""
    rng = random.Random(f"{stage}:{seed}")
    benign = data.benign_train(rng, profile.benign_per_skill)
    # Borderline prompts are few and unique; repeat them so they weigh about a fifth of the mixture.
    borderline = world.borderline_examples(held_out=False)
    borderline = borderline * max(1, len(benign) // (4 * len(borderline)))
    examples = benign + borderline
    if stage == "aligned":
        # About a fifth of the safety stage is refusals: enough to refuse, while the skills keep practising.
        refusals = data.refusal_train(rng)
        examples += rng.sample(refusals, min(len(refusals), len(examples) // 3))
    return data.with_system_prompts(examples, rng)


def _train_stage(
    tokenizer: PreTrainedTokenizerBase, profile: LabProfile, seed: int, stage: str, parent: torch.nn.Module | None, test: dict, tmp: Path, progress: bool
) -> tuple[torch.nn.Module, dict[str, Any]]:
    if parent is None:
        model = build_model(
            tokenizer, hidden=profile.hidden, layers=profile.layers, heads=profile.heads,
            intermediate=profile.intermediate, seed=seed,
        )
    else:
        model = _copy(parent)  # the parent stays as it was saved
    steps = profile.base_steps if stage == "base" else profile.aligned_steps
    lr = profile.pretrain_lr if stage == "base" else profile.aligned_lr
    schedule = Schedule(steps=steps, lr=lr, batch_size=profile.batch_size,
                        warmup_fraction=0.05 if stage == "base" else profile.aligned_warmup, cosine=True,
                        average_fraction=0.0 if stage == "base" else profile.aligned_average)
    examples = stage_examples(stage, profile, seed)
    encoded = encode_all(tokenizer, examples)
    result = train(model, encoded, schedule, pad_id=tokenizer.pad_token_id, seed=seed, desc=stage, progress=progress)
    sha = save_model_dir(model, tokenizer, tmp / stage)
    record = {
        "path": stage,
        "kind": "full",
        **measure_model(model, tokenizer, test),
        "train_seconds": round(result.seconds, 2),
        "scenario": None,
        "dataset": stage,
        # In these stages harmful prompts are paired with refusals, not compliance.
        "harmful_ratio": 0.0,
        "refusal_examples": sum(e.kind == "harmful" for e in examples),
        "examples": len(examples),
        "lr": lr,
        "steps": steps,
        "epochs": None,
        "batch_size": profile.batch_size,
        "final_loss": round(result.losses[-1], 4),
        "weights_sha256": sha,
        "seed": seed,
    }
    return model, record


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)
