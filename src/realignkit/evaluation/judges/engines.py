"""Engines for model judges (Llama Guard, WildGuard, the HarmBench classifier): greedy continuations of raw
prompt strings, on transformers (default) or vLLM (when installed).

A model judge builds its published prompt text, then asks a `JudgeEngine` to continue it. Both engines tokenize
with the checkpoint's own tokenizer (`add_special_tokens` as the judge's reference code does), decode greedily,
and can report the probability of given words as the first generated token (Llama Guard's unsafe score).
`model` is a local Hugging Face dir or a hub id; a local dir is fingerprinted by its weights, a hub id is
recorded as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from realignkit.common import BadInputError

ENGINES = ("transformers", "vllm")


@dataclass(frozen=True)
class Completion:
    """A greedy continuation and, for each watched word, the probability that its first token comes first."""

    text: str
    first_token_probs: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class JudgeEngine(Protocol):
    model_id: str  # what answers: "weights:<sha>" for a local dir, else the hub id

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, add_special_tokens: bool,
                 watch: Sequence[str] = ()) -> list[Completion]: ...

    def clip(self, text: str, max_tokens: int) -> str: ...


def _identity(model: str) -> str:
    directory = Path(model).expanduser()
    if directory.is_dir():
        from realignkit.common import weights_fingerprint

        return weights_fingerprint(directory)
    return f"hub:{model}"


def _check_local_weights(model: str, allow_pickle: bool) -> None:
    directory = Path(model).expanduser()
    if not directory.exists():
        if model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise BadInputError(f"judge model {model!r} is neither a local dir nor a hub id (owner/name)")
        return
    if not (directory / "config.json").is_file():
        raise BadInputError(f"judge model {model!r} is not a Hugging Face model dir (no config.json)")
    if not list(directory.glob("*.safetensors")) and not allow_pickle:
        raise BadInputError(f"judge model {model!r} has no *.safetensors weights (pickle refused; --allow-pickle)")


def first_token_ids(tokenizer: Any, words: Sequence[str]) -> dict[str, int]:
    """The first token id of each word as the model would write it (no special tokens)."""
    ids = {}
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if not encoded:
            raise BadInputError(f"the judge's tokenizer turns {word!r} into no tokens")
        ids[word] = int(encoded[0])
    return ids


def clip_with_tokenizer(tokenizer: Any, text: str, max_tokens: int) -> str:
    """HarmBench's clip: encode with special tokens, keep the first `max_tokens`, decode without specials."""
    ids = tokenizer.encode(text, max_length=max_tokens, truncation=True)
    return tokenizer.decode(ids, skip_special_tokens=True)


class TransformersEngine:
    """An in-process causal LM: batched, left-padded, greedy."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, batch_size: int = 8) -> None:
        self.model, self.tokenizer, self.model_id, self.batch_size = model.eval(), tokenizer, model_id, batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    @classmethod
    def load(cls, model: str, *, device: str | None = None, dtype: str | None = None, batch_size: int = 8,
             allow_pickle: bool = False) -> TransformersEngine:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _check_local_weights(model, allow_pickle)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else "auto"
        tokenizer = AutoTokenizer.from_pretrained(model)
        loaded = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype, use_safetensors=not allow_pickle)
        return cls(loaded.to(device), tokenizer, model_id=_identity(model), batch_size=batch_size)

    def clip(self, text: str, max_tokens: int) -> str:
        return clip_with_tokenizer(self.tokenizer, text, max_tokens)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, add_special_tokens: bool,
                 watch: Sequence[str] = ()) -> list[Completion]:
        import torch

        watched = first_token_ids(self.tokenizer, watch)
        device = next(self.model.parameters()).device
        results: list[Completion] = []
        batches = range(0, len(prompts), self.batch_size)
        for start in tqdm(batches, desc="judge model", disable=len(batches) < 4, leave=False):
            batch = self.tokenizer(list(prompts[start : start + self.batch_size]), return_tensors="pt",
                                   padding=True, add_special_tokens=add_special_tokens).to(device)
            with torch.inference_mode():
                output = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                             output_scores=bool(watched), return_dict_in_generate=True,
                                             pad_token_id=self.tokenizer.pad_token_id)
            new_tokens = output.sequences[:, batch["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            first = output.scores[0].float().softmax(-1) if watched else None
            for row, text in enumerate(texts):
                probs = {word: float(first[row, token]) for word, token in watched.items()} if first is not None else {}
                results.append(Completion(text, probs))
        return results


class VLLMEngine:
    """vLLM's offline engine; prompts are tokenized here, so both engines see the same token ids."""

    def __init__(self, model: str, *, allow_pickle: bool = False, **engine_options: Any) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise BadInputError("judge engine 'vllm' needs the vllm package: pip install 'realignkit[vllm]'") from exc
        _check_local_weights(model, allow_pickle)
        self.model_id = _identity(model)
        self.llm = vllm.LLM(model=model, **engine_options)
        self.tokenizer = self.llm.get_tokenizer()

    def clip(self, text: str, max_tokens: int) -> str:
        return clip_with_tokenizer(self.tokenizer, text, max_tokens)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, add_special_tokens: bool,
                 watch: Sequence[str] = ()) -> list[Completion]:
        import math

        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        watched = first_token_ids(self.tokenizer, watch)
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, logprobs=20 if watched else None)
        inputs = [TokensPrompt(prompt_token_ids=self.tokenizer.encode(p, add_special_tokens=add_special_tokens))
                  for p in prompts]
        results = []
        for output in self.llm.generate(inputs, params, use_tqdm=len(inputs) > 32):
            best = output.outputs[0]
            probs: dict[str, float] = {}
            if watched and best.logprobs:
                # Only the top 20 log-probabilities come back; a watched token outside them has probability ~0.
                first = best.logprobs[0]
                probs = {word: math.exp(first[token].logprob) if token in first else 0.0
                         for word, token in watched.items()}
            results.append(Completion(best.text, probs))
        return results


def load_engine(model: str | Path, engine: str = "transformers", **options: Any) -> JudgeEngine:
    """A `JudgeEngine` for a model judge; `options` go to the engine (device, dtype, batch_size, allow_pickle)."""
    if engine not in ENGINES:
        raise BadInputError(f"unknown judge engine {engine!r}; known: {', '.join(ENGINES)}")
    settings = options.pop("vllm", None)  # VLLMOptions (or its dict): tensor parallelism, GPU memory, context
    if engine == "vllm":
        vllm_options = {k: v for k, v in options.items() if k in ("allow_pickle", "dtype") and v is not None}
        return VLLMEngine(str(model), **vllm_options, **_engine_settings(settings))
    return TransformersEngine.load(str(model), **options)


def _engine_settings(settings: Any) -> dict[str, Any]:
    """`vllm.LLM` keywords from the `--tensor-parallel-size/--gpu-memory-utilization/--max-model-len` settings."""
    if not settings:
        return {}
    from realignkit.evaluation.vllm_engine import VLLMOptions

    options = settings if isinstance(settings, VLLMOptions) else VLLMOptions.model_validate(settings)
    given = options.model_dump(exclude_none=True, exclude_defaults=True)
    return {key: given[key] for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len",
                                        "distributed_executor_backend", "enforce_eager") if key in given}
