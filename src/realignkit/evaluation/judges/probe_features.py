"""Hidden-state features of an answer for the refusal probe: the residual stream of a small chat model, mean-pooled
over the first response tokens.

The text is the chat turn `<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n{response}` (prompt cut to
`max_prompt_tokens`, response to the largest window). Only response positions are pooled: the prompt is context,
so the probe reads how the model answered, not what it was asked (pooling over the prompt as well made a probe
learn which prompts get refused, which does not transfer between models). Features are the concatenation, for
each window w and layer l, of the mean of hidden_states[l] over the first w response tokens.

The same function runs when the probe is fitted (benchmarks/fit_refusal_probe.py) and when it judges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

USER_HEAD = "<|im_start|>user\n"
ASSISTANT_HEAD = "<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class FeatureSpec:
    layers: tuple[int, ...] = (15, 20)  # indices into hidden_states (0 = embeddings, l = after l decoder layers)
    windows: tuple[int, ...] = (32, 64)  # response tokens pooled
    max_prompt_tokens: int = 64

    @property
    def depth(self) -> int:
        """Decoder layers that must run: hidden_states[l] is the output of layer l (1-based)."""
        return max(self.layers)

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "windows": list(self.windows), "max_prompt_tokens": self.max_prompt_tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(data["layers"]), tuple(data["windows"]), int(data["max_prompt_tokens"]))


def truncate_to_depth(model: Any, depth: int) -> Any:
    """Keep the first `depth + 1` decoder layers: hidden_states[depth] (the residual stream before the final norm)
    is then exactly what the full model computes, and the rest of the stack is never run."""
    keep = depth + 1
    layers = model.model.layers
    if keep < len(layers):
        model.model.layers = layers[:keep]
        model.config.num_hidden_layers = keep
    return model


def _token_rows(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str],
                spec: FeatureSpec) -> list[tuple[list[int], int, int]]:
    """(ids, response start, response length) per answer."""
    head = tokenizer.encode(USER_HEAD, add_special_tokens=False)
    middle = tokenizer.encode(ASSISTANT_HEAD, add_special_tokens=False)
    window = max(spec.windows)
    rows = []
    for prompt, response in zip(prompts, responses, strict=True):
        asked = tokenizer.encode(str(prompt).strip(), add_special_tokens=False)[: spec.max_prompt_tokens]
        answer = tokenizer.encode(str(response).strip(), add_special_tokens=False)[:window]
        start = len(head) + len(asked) + len(middle)
        rows.append((head + asked + middle + answer, start, len(answer)))
    return rows


def hidden_state_features(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str],
                          spec: FeatureSpec, *, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """[n, len(windows) * len(layers) * hidden] float32 features (order: window-major, then layer)."""
    import torch

    rows = _token_rows(tokenizer, prompts, responses, spec)
    hidden = model.config.hidden_size
    out = np.zeros((len(rows), len(spec.windows) * len(spec.layers) * hidden), dtype=np.float32)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="refusal probe", disable=not progress, leave=False):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):  # right padding: real tokens never attend to it
            tokens = rows[index][0]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.inference_mode():
            states = model.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 output_hidden_states=True, use_cache=False).hidden_states
        for row, index in enumerate(chunk):
            _, begin, length = rows[index]
            if length == 0:  # an empty answer: read the position that would have started it
                begin, length = begin - 1, 1
            parts = []
            for window in spec.windows:
                n = min(window, length)
                parts.extend(states[layer][row, begin : begin + n].float().mean(0) for layer in spec.layers)
            out[index] = torch.cat(parts).cpu().numpy()
    return out
