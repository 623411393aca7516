"""Turn calibration texts into token batches through the model's own chat template.

Each example becomes `template(user: prompt) + response`, so the statistics and the preference log-probabilities
see the same token layout the model saw while it was fine-tuned. A response mask marks the answer tokens
(DPO scores only those).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from realignkit.calibration.calibration_files import PromptResponse
from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    response_start: int  # index of the first answer token


@dataclass(frozen=True)
class TokenBatch:
    input_ids: torch.Tensor  # [batch, seq] right-padded
    attention_mask: torch.Tensor  # [batch, seq] 1 = real token
    response_mask: torch.Tensor  # [batch, seq] 1 = answer token

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.response_mask.to(device)
        )


def _render(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> tuple[str, str]:
    """(prompt text ending with the assistant header, full text including the answer)."""
    user = [{"role": "user", "content": prompt}]
    prompt_text = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": response}], tokenize=False
    )
    if not full_text.startswith(prompt_text):
        # Some templates render the last assistant turn differently; fall back to prompt + answer + eos.
        full_text = prompt_text + response + (tokenizer.eos_token or "")
    return prompt_text, full_text


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[PromptResponse], *, max_length: int = 512
) -> list[EncodedExample]:
    """Tokenize each example with the chat template; truncate on the right to max_length tokens."""
    if not getattr(tokenizer, "chat_template", None):
        raise BadInputError(
            "the model's tokenizer has no chat template; calibration needs one to format the data"
        )
    encoded = []
    for example in examples:
        prompt_text, full_text = _render(tokenizer, example.prompt, example.response)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"][:max_length]
        encoded.append(
            EncodedExample(input_ids=list(full_ids), response_start=min(len(prompt_ids), len(full_ids)))
        )
    return encoded


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def collate(examples: Sequence[EncodedExample], pad_id: int) -> TokenBatch:
    """Right-pad a list of encoded examples into one batch."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    response = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        attention[row, :length] = 1
        response[row, example.response_start : length] = 1
    return TokenBatch(ids, attention, response)


def iter_batches(tokenizer: PreTrainedTokenizerBase, encoded: Sequence[EncodedExample], batch_size: int) -> Iterator[TokenBatch]:
    pad_id = _pad_id(tokenizer)
    for start in range(0, len(encoded), batch_size):
        yield collate(encoded[start : start + batch_size], pad_id)
