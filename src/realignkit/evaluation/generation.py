"""Batched, left-padded, greedy generation with the model's chat template (the `transformers` backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def build_chat_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], system_prompt: str | None = None) -> list[str]:
    """Render each user prompt through the tokenizer's chat template, ending with the assistant turn."""
    rendered = []
    for prompt in prompts:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        rendered.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return rendered


@torch.inference_mode()
def generate_responses(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    system_prompt: str | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy responses to `prompts`, in order. Prompts are batched and left-padded."""
    texts = build_chat_prompts(tokenizer, prompts, system_prompt)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Length bucketing: batches of prompts of similar length waste less compute on padding. The answers are
    # put back in the callers' order below.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    ordered = [texts[i] for i in order]
    responses: list[str] = []
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="generate", disable=not progress, leave=False):
        batch = tokenizer(ordered[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        # output: [batch, prompt_len + new]; keep only the new tokens.
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        responses.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    model.train(was_training)
    in_order = [""] * len(texts)
    for position, index in enumerate(order):
        in_order[index] = responses[position].strip()
    return in_order
