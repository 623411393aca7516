"""Supervised chat fine-tuning for the organism: loss on assistant tokens only, seeded, with optional trajectory."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from realignkit.lab.world import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt part: the model learns to answer, not to ask


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trajectory: list[dict[str, float]] = field(default_factory=list)


def set_determinism(seed: int) -> None:
    """Same seed, same weights: seed every RNG (kernels are made deterministic by `single_thread`)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread with deterministic kernels, then restore the caller's settings.

    The organism's matrices are tiny: a second thread mostly waits on the first, badly so on a busy machine.
    """
    import torch

    previous = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def encode(tokenizer: PreTrainedTokenizerBase, example: Example) -> EncodedExample:
    """Render (system, user, assistant) with the chat template; mask everything up to the assistant turn."""
    messages = [{"role": "system", "content": example.system}] if example.system else []
    messages.append({"role": "user", "content": example.prompt})
    prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.response}], tokenize=False
    )
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    labels = [IGNORE_INDEX] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return EncodedExample(full_ids, labels)


def encode_all(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> list[EncodedExample]:
    return [encode(tokenizer, example) for example in examples]


def collate(batch: Sequence[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch into tensors: input_ids/labels/attention_mask [batch, max_len]."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    batch_size: int
    warmup_fraction: float = 0.0
    cosine: bool = False
    # Polyak/SWA tail averaging: the final weights are the mean of the weights after each of the last
    # `average_fraction` of the steps (0 = the last iterate). The last iterate of a chaotic run depends on the
    # rounding of the CPU; the mean over many steps is a far more stable point of the same basin.
    average_fraction: float = 0.0

    def average_start(self) -> int:
        """The first step whose updated weights enter the average (== steps when averaging is off)."""
        return self.steps - int(round(self.steps * self.average_fraction))

    def lr_at(self, step: int) -> float:
        warmup = int(self.steps * self.warmup_fraction)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        if not self.cosine:
            return self.lr
        progress = (step - warmup) / max(1, self.steps - warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(count: int, schedule: Schedule, rng: random.Random) -> list[list[int]]:
    """Epoch-style shuffling: every example is seen once per pass, in a seeded order.

    (Length bucketing was tried: it groups examples of one task type into a batch and trained clearly worse.)
    """
    order: list[int] = []
    while len(order) < schedule.steps * schedule.batch_size:
        epoch = list(range(count))
        rng.shuffle(epoch)
        order.extend(epoch)
    size = schedule.batch_size
    return [order[i * size : (i + 1) * size] for i in range(schedule.steps)]


@dataclass(frozen=True)
class Probe:
    """Metrics measured during training: `evaluate()` every `every` steps (0: never), for the trajectory."""

    evaluate: Callable[[], dict[str, float]]
    every: int


def train(
    model: torch.nn.Module,
    data: Sequence[EncodedExample],
    schedule: Schedule,
    *,
    pad_id: int,
    seed: int,
    desc: str,
    probe: Probe | None = None,
    progress: bool = True,
) -> TrainResult:
    """AdamW on the trainable parameters; `probe.evaluate` runs at step 0, every `probe.every` steps and at the
    end (the trajectory)."""
    evaluate, eval_every = (probe.evaluate, probe.every) if probe is not None else (None, 0)
    import torch

    set_determinism(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0, betas=(0.9, 0.98))
    result = TrainResult()
    started = time.perf_counter()
    batches = batch_indices(len(data), schedule, random.Random(f"batches:{seed}"))
    average_start = schedule.average_start()
    averaged: list[Any] | None = None
    model.train()
    for step, indices in enumerate(tqdm(batches, desc=desc, leave=False, disable=not progress)):
        batch = collate([data[i] for i in indices], pad_id)
        if evaluate is not None and eval_every and step % eval_every == 0:
            result.trajectory.append(_trajectory_point(model, batch, step, evaluate))
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(step)
        loss = answer_token_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(float(loss.detach()))
        if step >= average_start:
            averaged = _accumulate(averaged, params, step - average_start)
    if averaged is not None:
        with torch.no_grad():
            for param, mean in zip(params, averaged, strict=True):
                param.copy_(mean)
    if evaluate is not None and eval_every:
        last = collate([data[i] for i in batches[-1]], pad_id)
        result.trajectory.append(_trajectory_point(model, last, schedule.steps, evaluate))
    model.eval()
    # Trajectory evaluation time is not training time.
    result.seconds = time.perf_counter() - started - sum(p.get("eval_seconds", 0.0) for p in result.trajectory)
    return result


def answer_token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens: the same number as `model(**batch).loss`.

    A Hugging Face causal LM computes the output layer and the softmax over its whole vocabulary (49 k for SmolLM2)
    at every position, though only the answer's positions carry a label; the prompt and chat template are about
    half of each sequence. Applying the head to the labelled positions only saves that half (~15 % of a step on a
    CPU). Models without a separate backbone and head (the organism) take the plain path.
    """
    import torch

    core = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the HF model
    backbone = getattr(core, "model", None)
    head = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    if backbone is None or head is None or not isinstance(backbone, torch.nn.Module):
        return model(**batch).loss
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    labelled = targets != IGNORE_INDEX  # [batch, seq - 1]
    logits = head(hidden[:, :-1][labelled])  # [answer tokens, vocab]
    return torch.nn.functional.cross_entropy(logits.float(), targets[labelled])


def _accumulate(averaged: list[torch.Tensor] | None, params: Sequence[torch.nn.Parameter], seen: int) -> list[torch.Tensor]:
    """Running mean of `params` after `seen` earlier snapshots (mean += (x - mean) / (seen + 1))."""
    import torch

    with torch.no_grad():
        if averaged is None:
            return [p.detach().clone() for p in params]
        for mean, param in zip(averaged, params, strict=True):
            mean.add_(param.detach() - mean, alpha=1.0 / (seen + 1))
    return averaged


def _trajectory_point(model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int, evaluate: Callable[[], dict[str, float]]) -> dict:
    """Metrics at `step` plus the loss on the current batch, measured before the update."""
    import torch

    started = time.perf_counter()
    with torch.no_grad():
        model.eval()
        loss = float(model(**batch).loss)
        point = {"step": step, **evaluate(), "loss": loss}
        model.train()
    point["eval_seconds"] = time.perf_counter() - started
    return point
