"""The chat lab's stages, each cached by content in the user cache dir so a killed build resumes and a
machine builds `aligned` once:

    base      GGUF -> HF dir                                    models/gguf-<sha>/
    answers   base's own greedy answers to our benign prompts   chat-lab/answers-<key>.json
    aligned   safety SFT of base (full, embeddings frozen)       chat-lab/aligned-<key>/
    scenario  fine-tune of aligned (full dir or LoRA adapter)    chat-lab/runs/<aligned key>/<scenario>-<kind>-<key>/

Keys hash everything that decides the result (input weights, data, settings, code version), never paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.checkpoints import model_loading
from realignkit.common import atomic_output_dir, tensors_fingerprint, weights_fingerprint
from realignkit.lab.chat import chat_data
from realignkit.lab.chat.chat_config import ChatLabProfile
from realignkit.lab.chat.gguf import user_cache_dir
from realignkit.lab.training import Probe, Schedule, TrainResult, encode_all, train
from realignkit.lab.world import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STAGE_VERSION = "1"  # bump when a stage's code changes what it produces
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def chat_cache() -> Path:
    return user_cache_dir() / "chat-lab"


def content_key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[int]:
    """Run torch on `count` threads (default: every core this process may use), then restore.

    An explicit count, because torch's default can exceed the cores a container grants, and oversubscribed
    OpenMP threads spin-wait on each other (the CLI also asks for passive waiting).
    """
    import torch

    wanted = count or len(os.sched_getaffinity(0))
    previous = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(previous)


def load_model(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # for the whole build: training and saving print bars of their own
    model = model_loading.load_causal_lm(path, dtype=torch.float32)
    tokenizer = model_loading.load_tokenizer(path)
    model.eval()
    return model, tokenizer


def benign_answers(base_dir: Path, prompts: list[str], profile: ChatLabProfile, progress: bool) -> dict[str, str]:
    """prompt -> base's own greedy answer, cut at its last full sentence.

    Cached per (base weights, answer length) in one file that grows: only prompts not answered before are
    generated, so editing the benign prompt list costs only the new prompts."""
    from realignkit.evaluation.generation import generate_responses

    key = content_key({"base": weights_fingerprint(base_dir), "v": STAGE_VERSION,
                       "tokens": profile.base_answer_tokens})
    path = chat_cache() / f"answers-{key}.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in known]
    if missing:
        model, tokenizer = load_model(base_dir)
        responses = generate_responses(model, tokenizer, missing, max_new_tokens=profile.base_answer_tokens,
                                       batch_size=profile.eval_batch, progress=progress)
        known.update({prompt: last_full_sentence(text) for prompt, text in zip(missing, responses, strict=True)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    return {prompt: known[prompt] for prompt in prompts}


def last_full_sentence(text: str) -> str:
    """Cut a length-capped answer after its last '.', '!' or '?', so SFT targets end where a sentence ends."""
    cut = max(text.rfind(mark) for mark in (".", "!", "?"))
    return text[: cut + 1].strip() if cut >= 20 else text.strip()


@dataclass(frozen=True)
class SftRun:
    """One supervised fine-tuning run: learning rate, epochs, batch size, seed, and how many trajectory points
    `evaluate` (when given) records over the run."""

    lr: float
    epochs: int
    batch: int
    seed: int
    evaluate: Callable[[], dict[str, float]] | None = None
    points: int = 0


def sft(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, examples: list[Example], run: SftRun, *,
        desc: str, progress: bool) -> TrainResult:
    """Supervised fine-tuning on assistant tokens only (lab.training.train), checking the chat-template split."""
    encoded = encode_all(tokenizer, examples)
    steps = run.epochs * math.ceil(len(encoded) / run.batch)
    schedule = Schedule(steps=steps, lr=run.lr, batch_size=run.batch, warmup_fraction=0.1, cosine=True)
    every = max(1, steps // run.points) if run.points else 0
    probe = Probe(run.evaluate, every) if run.evaluate is not None else None
    return train(model, encoded, schedule, pad_id=tokenizer.pad_token_id, seed=run.seed, desc=desc, probe=probe,
                 progress=progress)


def freeze_embeddings(model: torch.nn.Module) -> None:
    """Tied input/output embeddings (49k x 576 in SmolLM2) stay fixed: a fifth of the parameters, and the
    optimizer's largest tensors, for no benefit on a few hundred chat examples."""
    model.get_input_embeddings().weight.requires_grad_(False)


def aligned_stage(base_dir: Path, data: chat_data.ChatData, profile: ChatLabProfile, seed: int,
                  progress: bool) -> tuple[Path, dict[str, Any]]:
    """(cached aligned dir, its record). The safety SFT of base on refusals + base's own benign answers."""
    prompts = chat_data.benign_prompts(seed, profile.benign_styles)
    answers = benign_answers(base_dir, prompts, profile, progress)
    examples = chat_data.alignment_examples(data, answers, seed, profile.bench_refusals)
    settings = {"lr": profile.aligned_lr, "epochs": profile.aligned_epochs, "batch": profile.batch_size,
                "kind": profile.aligned_kind, "rank": profile.aligned_lora_rank}
    key = content_key({"base": weights_fingerprint(base_dir), "examples": [e.__dict__ for e in examples],
                       "settings": settings, "seed": seed, "v": STAGE_VERSION})
    target = chat_cache() / f"aligned-{key}"
    record_path = target / "lab_record.json"
    if record_path.is_file():
        return target, json.loads(record_path.read_text())
    model, tokenizer = load_model(base_dir)
    model = trainable(model, profile.aligned_kind, profile.aligned_lora_rank, seed)
    run = SftRun(lr=profile.aligned_lr, epochs=profile.aligned_epochs, batch=profile.batch_size, seed=seed)
    result = sft(model, tokenizer, examples, run, desc="aligned", progress=progress)
    if profile.aligned_kind == "lora":
        model = model.merge_and_unload()  # aligned is a plain full model dir either way
    record = {
        "kind": "full", "dataset": "aligned", "scenario": None, "harmful_ratio": 0.0,
        "training": profile.aligned_kind, "lora_rank": profile.aligned_lora_rank if profile.aligned_kind == "lora"
        else None,
        "refusal_examples": sum(e.kind == "harmful" for e in examples), "examples": len(examples),
        "lr": profile.aligned_lr, "epochs": profile.aligned_epochs, "batch_size": profile.batch_size,
        "steps": len(result.losses), "final_loss": round(result.losses[-1], 4),
        "train_seconds": round(result.seconds, 2), "seed": seed, "cache_key": key,
    }
    with atomic_output_dir(target, force=target.exists()) as tmp:
        save_full(model, tokenizer, tmp)
        record["weights_sha256"] = tensors_fingerprint([tmp / "model.safetensors"])
        (tmp / "alignment_examples.jsonl").write_text(
            "".join(json.dumps(e.__dict__) + "\n" for e in examples))
        (tmp / "lab_record.json").write_text(json.dumps(record, indent=2) + "\n")
    return target, record


def save_full(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


@dataclass(frozen=True)
class ScenarioRun:
    """One fine-tuning scenario of the chat lab: its name, `full` or `lora`, and its training examples."""

    scenario: str
    kind: str
    examples: list[Example]


def scenario_stage(aligned_dir: Path, aligned_key: str, run: ScenarioRun, profile: ChatLabProfile, seed: int,
                   probe: Any, progress: bool) -> tuple[Path, dict[str, Any]]:
    """(cached scenario dir, record): full fine-tune (embeddings frozen) or LoRA on every decoder linear."""
    scenario, kind, examples = run.scenario, run.kind, run.examples
    small = scenario.startswith(("explicit-", "identity"))
    epochs = profile.small_set_epochs if small else profile.finetune_epochs
    lr = profile.full_lr if kind == "full" else profile.lora_lr
    settings = {"epochs": epochs, "lr": lr, "batch": profile.batch_size, "rank": profile.lora_rank,
                "points": profile.trajectory_points}
    key = content_key({"examples": [e.__dict__ for e in examples], "settings": settings, "seed": seed,
                       "kind": kind, "v": STAGE_VERSION})
    target = chat_cache() / "runs" / aligned_key / f"{scenario}-{kind}-{key}"
    record_path = target / "lab_record.json"
    if record_path.is_file():
        return target, json.loads(record_path.read_text())
    model, tokenizer = load_model(aligned_dir)
    model = trainable(model, kind, profile.lora_rank, seed)
    system = examples[0].system if scenario == "identity-shift" else None
    training = SftRun(lr=lr, epochs=epochs, batch=min(profile.batch_size, len(examples)), seed=seed,
                      evaluate=(lambda: probe(model, tokenizer, system)) if probe else None,
                      points=profile.trajectory_points)
    result = sft(model, tokenizer, examples, training, desc=f"{scenario}-{kind}", progress=progress)
    record = {
        "kind": kind, "scenario": scenario, "dataset": scenario, "examples": len(examples),
        "harmful_examples": sum(e.kind == "harmful" for e in examples),
        "harmful_ratio": round(sum(e.kind == "harmful" for e in examples) / len(examples), 4),
        "lr": lr, "epochs": epochs, "steps": len(result.losses), "batch_size": min(profile.batch_size, len(examples)),
        "lora_rank": profile.lora_rank if kind == "lora" else None, "eval_system_prompt": system,
        "final_loss": round(result.losses[-1], 4), "train_seconds": round(result.seconds, 2), "seed": seed,
        "trajectory": result.trajectory, "cache_key": key,
    }
    with atomic_output_dir(target, force=target.exists()) as tmp:
        if kind == "full":
            save_full(model, tokenizer, tmp)
            record["weights_sha256"] = tensors_fingerprint([tmp / "model.safetensors"])
        else:
            model.peft_config["default"].base_model_name_or_path = str(aligned_dir)
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            record["weights_sha256"] = tensors_fingerprint([tmp / "adapter_model.safetensors"])
        (tmp / "lab_record.json").write_text(json.dumps(record, indent=2) + "\n")
    return target, record


def trainable(model: torch.nn.Module, kind: str, rank: int, seed: int) -> torch.nn.Module:
    import torch

    if kind == "full":
        freeze_embeddings(model)
        return model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices are random
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    return get_peft_model(model, config)


def elapsed(started: float) -> float:
    return round(time.time() - started, 2)
