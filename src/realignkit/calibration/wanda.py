"""Wanda input statistics: the L2 norm of every input feature of a linear layer over a calibration set.

For a target linear layer with input X (all calibration tokens stacked, [tokens, in_features]) we store
‖X_j‖₂ = sqrt(Σ_t X_tj²) for every input feature j. Antidote's score is S_ij = |W_ij| · ‖X_j‖₂ (Wanda: Sun et al.,
"A simple and effective pruning approach for large language models", 2023; used by Huang et al., "Antidote").

Statistics are gathered by forward pre-hooks. Padding tokens are excluded, so batching does not change the
result. With `stream_layers=True`, only one decoder layer at a time sits on the compute device and the hidden
states of the whole calibration set are passed from layer to layer (Wanda's layer-wise calibration), which is
how a model larger than the device memory is calibrated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from realignkit.calibration.calibration_files import PromptResponse
from realignkit.calibration.chat import TokenBatch, encode_examples, iter_batches
from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

STATS_FILENAME = "calibration_stats.safetensors"
_PEFT_PREFIX = "base_model.model."


def canonical_module_name(name: str) -> str:
    """Plain-model module name: strip PEFT wrappers so stats keys read like `model.layers.0.self_attn.q_proj`.

    `base_model.model.X.base_layer` -> `X`; `base_model.model.X.lora_A.default` -> `X.lora_A`.
    """
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX) :]
    if name.endswith(".base_layer"):
        name = name[: -len(".base_layer")]
    for part in (".lora_A.", ".lora_B."):
        if part in name:
            head, adapter = name.split(part, 1)
            if "." not in adapter:  # drop the adapter name ("default")
                name = head + part.rstrip(".")
    return name


def linear_modules(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear of the model (PEFT LoRA pieces included), keyed by canonical name."""
    found: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found[canonical_module_name(name)] = module
    return found


class _NormAccumulator:
    """Pre-hooks summing X_j² over the real (non-padding) tokens of each batch, in float64."""

    def __init__(self, modules: dict[str, nn.Linear]) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.token_mask: torch.Tensor | None = None  # [batch, seq] bool, set before each forward
        self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0]  # [batch, seq, in_features]
            if self.token_mask is not None and x.dim() == 3 and x.shape[:2] == self.token_mask.shape:
                x = x[self.token_mask.to(x.device)]  # [real tokens, in_features]
            squares = x.reshape(-1, x.shape[-1]).to(torch.float64).pow(2).sum(dim=0)  # [in_features]
            if name in self.sums:
                self.sums[name] += squares
            else:
                self.sums[name] = squares

        return hook

    def norms(self) -> dict[str, torch.Tensor]:
        return {name: total.sqrt().to(torch.float32).cpu() for name, total in self.sums.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The largest ModuleList whose name ends in 'layers'/'h'/'blocks' (the transformer stack)."""
    candidates = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks")
    ]
    if not candidates:
        raise BadInputError("cannot find the decoder layers of this model; run without layer streaming")
    return max(candidates, key=len)


class _StopForward(Exception):
    """Raised by the capture hook once the first decoder layer's inputs are recorded."""


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _forward_whole(
    model: nn.Module,
    batches: Sequence[TokenBatch],
    acc: _NormAccumulator,
    device: torch.device,
    progress: bool,
) -> None:
    for batch in tqdm(batches, desc="calibration", leave=False, disable=not progress):
        batch = batch.to(device)
        acc.token_mask = batch.attention_mask.bool()
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)


def _forward_streamed(
    model: nn.Module,
    batches: Sequence[TokenBatch],
    acc: _NormAccumulator,
    device: torch.device,
    progress: bool,
) -> None:
    layers = decoder_layers(model)
    for layer in layers:
        layer.to("cpu")
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append((args, kwargs))
        raise _StopForward

    handle = layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for batch in batches:
            batch = batch.to(device)
            with suppress(_StopForward):
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    finally:
        handle.remove()
    masks = [b.attention_mask.bool() for b in batches]
    for layer in tqdm(layers, desc="calibration layers", leave=False, disable=not progress):
        layer.to(device)
        for index, (args, kwargs) in enumerate(captured):
            acc.token_mask = masks[index]
            output = layer(*args, **kwargs)
            hidden = output[0] if isinstance(output, tuple) else output  # [batch, seq, hidden]
            captured[index] = ((hidden, *args[1:]), kwargs)
        layer.to("cpu")


@dataclass(frozen=True)
class ForwardPasses:
    """How the calibration forward passes run: examples per batch, tokens per example (longer ones are cut),
    and where: `device` (default: the model's), `stream_layers` (one decoder layer on the device at a time)."""

    batch_size: int = 8
    max_length: int = 512
    device: torch.device | str | None = None
    stream_layers: bool = False


@torch.no_grad()
def collect_input_norms(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[PromptResponse],
    module_names: Sequence[str],
    passes: ForwardPasses | None = None,
    *,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """‖X_j‖₂ over all calibration tokens for each named linear module (canonical names), float32 on CPU."""
    passes = passes or ForwardPasses()
    stream_layers, device = passes.stream_layers, passes.device
    modules = linear_modules(model)
    missing = [name for name in module_names if name not in modules]
    if missing:
        raise BadInputError(f"calibration target {missing[0]!r} is not a linear module of the model")
    if stream_layers:
        layer_ids = {id(m) for m in decoder_layers(model).modules()}
        outside = [name for name in module_names if id(modules[name]) not in layer_ids]
        if outside:
            raise BadInputError(
                f"layer streaming only covers decoder layers; {outside[0]!r} lies outside them"
            )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    encoded = encode_examples(tokenizer, examples, max_length=passes.max_length)
    batches = list(iter_batches(tokenizer, encoded, passes.batch_size))
    acc = _NormAccumulator({name: modules[name] for name in module_names})
    try:
        with _eval_mode(model):
            if stream_layers:
                _forward_streamed(model, batches, acc, device, progress)
            else:
                _forward_whole(model, batches, acc, device, progress)
    except BadInputError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise BadInputError(f"the calibration forward pass failed on this model: {exc}") from exc
    finally:
        acc.remove()
    norms = acc.norms()
    for name in module_names:
        if name not in norms:
            raise BadInputError(f"calibration never reached module {name!r}; is it used in the forward pass?")
    return {name: norms[name] for name in module_names}


def outlier_features(input_norm: torch.Tensor, factor: float) -> torch.Tensor:
    """Indices j with ‖X_j‖₂ > factor · median_j ‖X_j‖₂ (sorted, int64); empty when factor <= 0.

    These are the "massive activation" features of Sun et al., "Massive activations in large language models"
    (2024): a handful of hidden dimensions carry values orders of magnitude above the rest, on every input (they
    act as fixed biases, e.g. attention sinks). Their norm dwarfs every other feature's, so a Wanda score ranks
    the weights reading them as the most important for *any* calibration text.
    """
    if input_norm.dim() != 1:
        raise ValueError(f"input_norm must be a vector, got shape {tuple(input_norm.shape)}")
    if factor <= 0 or input_norm.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    norm = input_norm.float()
    median = float(norm.median())
    if median <= 0.0:  # the ratio is undefined (most features never fire): nothing counts as an outlier
        return torch.zeros(0, dtype=torch.long)
    return torch.nonzero(norm > factor * median).flatten().cpu()


def save_input_norms(
    norms: dict[str, torch.Tensor], out_dir: str | os.PathLike[str], filename: str = STATS_FILENAME
) -> Path:
    """Write `calibration_stats.safetensors` (one float32 vector per module, length in_features)."""
    path = Path(out_dir) / filename
    save_file({name: t.contiguous().to(torch.float32) for name, t in norms.items()}, str(path))
    return path


def load_input_norms(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read statistics saved by `save_input_norms` (a file or the directory holding it)."""
    file_path = Path(path)
    if file_path.is_dir():
        file_path = file_path / STATS_FILENAME
    if not file_path.is_file():
        raise BadInputError(f"calibration statistics {str(path)!r} not found")
    try:
        return load_file(str(file_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BadInputError(
            f"calibration statistics {str(path)!r} are not a readable safetensors file: {exc}"
        ) from exc
