"""`build_chat_lab`: the real-model lab. SmolLM2-135M-Instruct as shipped is `base`; our safety SFT of it is
`aligned`; the scenarios are fine-tunes of aligned (Antidote's protocol). Same layout and lab.json keys as the
tiny organism (see realignkit.lab), plus `base_model`, so audit, diagnose, repair, sweep and demo need no
special case.

Each stage is cached by content in the user cache dir (stages.py); the lab dir itself is written whole or not
at all, with the cached weights hard-linked into it when the file system allows (copied otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from realignkit.checkpoints import model_loading
from realignkit.common import (
    BadInputError,
    atomic_output_dir,
    closest_match,
    is_adapter_dir,
    prepare_output_dir,
    tensors_fingerprint,
    weights_fingerprint,
    write_manifest,
)
from realignkit.evaluation.backends import GenerationSettings
from realignkit.evaluation.suite_items import SuiteItem, stratified_sample
from realignkit.lab.chat import chat_data, stages
from realignkit.lab.chat.chat_config import CHAT_PROFILES, CHAT_SCENARIOS, ChatLabProfile
from realignkit.lab.chat.gguf import cached_base_model
from realignkit.lab.chat.measure_chat import measure_chat_model
from realignkit.lab.chat.prompts import HELD_OUT_CATEGORY, HarmfulPrompt

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

CHAT_LAB_VERSION = "chat-1"
MEASURE_VERSION = 2  # bump when the lab.json figures are computed differently
KINDS = ("full", "lora")


def resolve_chat_profile(profile: str | ChatLabProfile) -> ChatLabProfile:
    if isinstance(profile, ChatLabProfile):
        return profile
    if profile not in CHAT_PROFILES:
        raise BadInputError(f"unknown chat lab profile {profile!r}{closest_match(profile, CHAT_PROFILES)}")
    return CHAT_PROFILES[profile]


def _validated(scenarios: list[str] | None, profile: ChatLabProfile) -> list[str]:
    chosen = list(profile.scenarios) if scenarios is None else list(scenarios)
    for name in chosen:
        if name not in CHAT_SCENARIOS:
            raise BadInputError(f"unknown scenario {name!r}{closest_match(name, CHAT_SCENARIOS)}; "
                                f"known: {', '.join(CHAT_SCENARIOS)}")
    for kind in profile.kinds:
        if kind not in KINDS:
            raise BadInputError(f"unknown fine-tuning kind {kind!r}; known: {', '.join(KINDS)}")
    return list(dict.fromkeys(chosen))


def build_chat_lab(out_dir: str | Path, scenarios: list[str] | None = None, seed: int = 0,
                   profile: str | ChatLabProfile = "smollm2", force: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Build the real-model lab into `out_dir` and return the lab.json content."""
    chosen = resolve_chat_profile(profile)
    names = _validated(scenarios, chosen)
    final = prepare_output_dir(out_dir, force=force)
    started, cpu_started = time.time(), time.process_time()
    with stages.torch_threads(chosen.threads) as threads:
        base_dir = cached_base_model(Path(chosen.gguf).expanduser() if chosen.gguf else None)
        data = chat_data.load_data(seed)
        suites = chat_data.build_suites(data, seed, chosen.task_suite_size)
        aligned_dir, aligned_record = stages.aligned_stage(base_dir, data, chosen, seed, progress)
        runs = _scenario_runs(names, chosen, data, base_dir, aligned_dir, aligned_record, suites["test"], seed,
                              progress)
        with atomic_output_dir(final, force=force) as tmp:
            chat_data.write_suites(suites, tmp / "suites")
            chat_data.write_calibration(data, tmp / "calibration", seed)
            models = {"base": _link_model(base_dir, tmp / "base", final)}
            models["aligned"] = _link_model(aligned_dir, tmp / "aligned", final)
            for label, (run_dir, _) in runs.items():
                models[label] = _link_model(run_dir, tmp / label, final)
            records = _measure_all(models, tmp, aligned_record, runs, suites["test"], chosen, progress)
            summary = _summary(names, seed, chosen, records, data.harmful)
            summary.update(total_seconds=stages.elapsed(started), torch_threads=threads,
                           cpu_seconds=round(time.process_time() - cpu_started, 2))
            (tmp / "lab.json").write_text(json.dumps(summary, indent=2) + "\n")
            write_manifest(tmp, command="lab build", started=started,
                           parameters={"scenarios": names, "seed": seed, "profile": chosen.name, "force": force})
    return summary


def _scenario_runs(names: list[str], profile: ChatLabProfile, data: chat_data.ChatData, base_dir: Path,
                   aligned_dir: Path, aligned_record: dict[str, Any], test: dict[str, list[SuiteItem]], seed: int,
                   progress: bool) -> dict[str, tuple[Path, dict[str, Any]]]:
    prompts = chat_data.benign_prompts(seed, profile.benign_styles)
    answers = stages.benign_answers(base_dir, prompts, profile, progress) if "identity-shift" in names else {}
    probe = _probe(test, profile)
    runs = {}
    bar = tqdm(total=len(names) * len(profile.kinds), desc="scenarios", disable=not progress)
    for name in names:
        examples = chat_data.scenario_examples(name, data, profile.task_examples, profile.identity_examples,
                                               answers, seed)
        for kind in profile.kinds:
            bar.set_postfix_str(f"{name}-{kind}")
            run = stages.ScenarioRun(name, kind, examples)
            runs[f"{name}-{kind}"] = stages.scenario_stage(aligned_dir, aligned_record["cache_key"], run, profile,
                                                           seed, probe, progress)
            bar.update()
    bar.close()
    return runs


def _probe(test: dict[str, list[SuiteItem]], profile: ChatLabProfile) -> Any:
    """Trajectory metrics on a small slice of the test split: trained-category harmful prompts and the task."""
    if not profile.trajectory_points:
        return None
    from realignkit.evaluation.judged_items import evaluate_items, rate

    harmful = stratified_sample([i for i in test["harmful"] if i.category != HELD_OUT_CATEGORY],
                                profile.probe_items, seed=1)
    task = test["new_skill"][: profile.probe_items // 2]
    old = test["old_skill"][: profile.probe_items // 2]

    def measure(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, system: str | None) -> dict[str, float]:
        results = evaluate_items(model, tokenizer, harmful + task + old, max_new_tokens=profile.max_new_tokens,
                                 batch_size=profile.eval_batch, system_prompt=system)
        return {"harmful_refusal": rate([r for r in results if r.item.kind == "harmful"], "refused") or 0.0,
                "new_skill_accuracy": rate([r for r in results if r.item.suite == "new_skill"], "correct") or 0.0,
                "old_skill_accuracy": rate([r for r in results if r.item.suite == "old_skill"], "correct") or 0.0}

    return measure


def _link_model(source: Path, target: Path, final: Path) -> dict[str, Any]:
    """Hard-link (else copy) a cached model or adapter dir into the lab; adapters point at the final aligned."""
    target.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.name in ("lab_record.json", "alignment_examples.jsonl") or not file.is_file():
            continue
        if file.name == "adapter_config.json":
            config = json.loads(file.read_text())
            config["base_model_name_or_path"] = str(final / "aligned")
            (target / file.name).write_text(json.dumps(config, indent=2) + "\n")
            continue
        try:
            os.link(file, target / file.name)
        except OSError:
            shutil.copy2(file, target / file.name)
    return {"path": target.name}


def _measure_all(models: dict[str, dict[str, Any]], tmp: Path, aligned_record: dict[str, Any],
                 runs: dict[str, tuple[Path, dict[str, Any]]], test: dict[str, list[SuiteItem]],
                 profile: ChatLabProfile, progress: bool) -> dict[str, dict[str, Any]]:
    """lab.json records: each model measured on the test split (cached next to its run)."""
    records = {}
    for label, entry in tqdm(models.items(), desc="measure", disable=not progress):
        record = {"path": entry["path"], "kind": "full"}
        if label == "base":
            record.update(scenario=None, dataset="base", train_seconds=None,
                          weights_sha256=tensors_fingerprint(sorted((tmp / "base").glob("*.safetensors"))))
        elif label == "aligned":
            record.update(aligned_record)
        elif label in runs:
            record.update({k: v for k, v in runs[label][1].items() if k != "trajectory"})
            _write_trajectory(runs[label][1].get("trajectory", []), tmp / label / "trajectory.csv")
        system = record.get("eval_system_prompt")
        record.update(_measured(tmp / entry["path"], tmp / "aligned", test, profile, system, progress))
        if system:  # identity shift: Qi et al. measure under the persona prompt; also report it without
            plain = _measured(tmp / entry["path"], tmp / "aligned", test, profile, None, progress)
            record["without_system_prompt"] = {k: v for k, v in plain.items() if not isinstance(v, dict)}
        records[label] = record
    return records


def _measured(model_dir: Path, aligned_dir: Path, test: dict[str, list[SuiteItem]], profile: ChatLabProfile,
              system: str | None, progress: bool) -> dict[str, Any]:
    is_adapter = is_adapter_dir(model_dir)
    fingerprint = weights_fingerprint(model_dir, aligned_dir if is_adapter else None)
    key = stages.content_key({"v": MEASURE_VERSION, "judge": _judge_source_digest(), "model": fingerprint,
                              "limit": profile.measure_limit,
                              "system": system,
                              "tokens": profile.max_new_tokens, "suites": {k: [i.id for i in v] for k, v in test.items()}})
    cached = stages.chat_cache() / "measurements" / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    model, tokenizer = stages.load_model(aligned_dir if is_adapter else model_dir)
    if is_adapter:
        model = model_loading.apply_adapter(model, model_dir, merge=False)
    settings = GenerationSettings(max_new_tokens=profile.max_new_tokens, batch_size=profile.eval_batch,
                                  system_prompt=system)
    metrics = measure_chat_model(model, tokenizer, fingerprint, test, settings, limit=profile.measure_limit,
                                 progress=progress)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _judge_source_digest() -> str:
    """The judge's rules and the answer scoring decide the figures: a cached measurement is reused only under the
    same ones."""
    import hashlib

    import realignkit.evaluation.judges as judges
    import realignkit.evaluation.scoring as scoring

    digest = hashlib.sha256()
    for path in [*sorted(Path(judges.__file__).parent.glob("*.py")), Path(scoring.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _write_trajectory(points: list[dict[str, Any]], path: Path) -> None:
    from realignkit.lab.finetune import write_trajectory

    write_trajectory(points, path)


def _summary(names: list[str], seed: int, profile: ChatLabProfile, models: dict[str, dict[str, Any]],
             harmful: dict[str, list[HarmfulPrompt]]) -> dict[str, Any]:
    categories = sorted({p.category for split in harmful.values() for p in split})
    return {
        "version": CHAT_LAB_VERSION,
        "seed": seed,
        "profile": profile.name,
        "base_model": profile.base_model,
        "held_out_category": HELD_OUT_CATEGORY,
        "categories": categories,
        "scenarios": names,
        "suites": {"test": "suites/test", "select": "suites/select", "default": "suites"},
        "calibration": {"antidote": "calibration/antidote.jsonl", "somf": "calibration/somf.jsonl"},
        "profile_settings": profile.model_dump(mode="json"),
        "models": models,
    }
