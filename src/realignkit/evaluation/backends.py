"""Generation backends: `transformers` (default, in-process), `openai` (any compatible endpoint), `vllm`.

Each backend has a `fingerprint` (what model answers: `common.weights_fingerprint` of a model dir, whatever
directory holds it) and `generate(prompts, settings)`. Answers are cached on disk by (fingerprint, prompt,
settings), so re-auditing an unchanged model, or a copy of it, costs nothing. The transformers and vLLM
backends share those keys for local chat models (`chat_settings_key`): either serves the other's answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from realignkit.common import BadInputError, state_dict_fingerprint
from realignkit.evaluation.audit_loading import check_weights, load_tokenizer, tokenizer_dir
from realignkit.evaluation.cache import KeyValueCache, cache_key
from realignkit.evaluation.openai_client import ChatClient
from realignkit.evaluation.vllm_engine import (
    GreedyDecoding,
    VLLMEngine,
    VLLMOptions,
    adapter_rank,
    engine_kwargs,
    lora_request,
    sampling_kwargs,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase
    from vllm.lora.request import LoRARequest



@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. Generation is greedy; everything here is part of the cache key except batch_size."""

    max_new_tokens: int = 64
    batch_size: int = 16
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise BadInputError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise BadInputError(f"--batch-size must be >= 1, got {self.batch_size}")

    def cache_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("batch_size")  # batching must not change greedy outputs, so it is not part of the key
        return fields


class Backend(Protocol):
    """What the audit asks of a generation backend: the fingerprint that keys its cached answers, greedy answers
    to prompts, and `close` (a vLLM engine gives its GPU memory back)."""

    fingerprint: str

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, *, progress: bool = False
                 ) -> list[str]: ...

    def close(self) -> None: ...


class CachedBackend:
    """Shared cache logic: look up every prompt, generate only the misses (deduplicated), store them."""

    fingerprint: str = "unknown"

    def __init__(self, cache: KeyValueCache | None = None) -> None:
        self.cache = cache
        self.generated = 0  # prompts this backend generated (cache misses), counted here: a shared cache's size
        # also grows with other processes' answers (Ray workers)

    def _settings_key(self, settings: GenerationSettings) -> dict[str, Any]:
        return settings.cache_fields()

    def cache_keys(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        return [cache_key(self.fingerprint, prompt, self._settings_key(settings)) for prompt in prompts]

    def close(self) -> None:
        """Release what the backend holds (a vLLM engine's GPU memory); the default holds nothing."""

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, *, progress: bool = False) -> list[str]:
        keys = self.cache_keys(prompts, settings)
        known = self.cache.get_many(keys) if self.cache is not None else {}
        missing: dict[str, str] = {}
        for key, prompt in zip(keys, prompts, strict=True):
            if key not in known:
                missing.setdefault(key, prompt)
        if missing:
            fresh = self._generate_uncached(list(missing.values()), settings, progress=progress)
            self.generated += len(fresh)
            new_entries = dict(zip(missing, fresh, strict=True))
            if self.cache is not None:
                self.cache.put_many(new_entries.items())
            known = {**known, **new_entries}
        return [known[key] for key in keys]

    def _generate_uncached(self, prompts: list[str], settings: GenerationSettings, *, progress: bool) -> list[str]:
        raise NotImplementedError


def chat_settings_key(settings: GenerationSettings, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The decoding part of a cache key for a local chat model, whichever engine runs it (transformers, vLLM)."""
    template = tokenizer.chat_template
    return {**settings.cache_fields(), "template": hashlib.sha256(str(template).encode()).hexdigest()}


class TransformersBackend(CachedBackend):
    """In-process HF model: batched, left-padded, chat template, greedy (see generation.generate_responses)."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, fingerprint: str | None = None,
                 cache: KeyValueCache | None = None) -> None:
        super().__init__(cache)
        if getattr(tokenizer, "chat_template", None) is None:
            raise BadInputError("the tokenizer has no chat template; pass --template FILE (a Jinja chat template)")
        self.model = model
        self.tokenizer = tokenizer
        # Models loaded from a dir come with its weights_fingerprint; a bare in-memory model is keyed by its tensors.
        self.fingerprint = fingerprint or "state-dict:" + state_dict_fingerprint(model.state_dict())

    def _settings_key(self, settings: GenerationSettings) -> dict[str, Any]:
        return chat_settings_key(settings, self.tokenizer)

    def _generate_uncached(self, prompts: list[str], settings: GenerationSettings, *, progress: bool) -> list[str]:
        from realignkit.evaluation.generation import generate_responses

        return generate_responses(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
            system_prompt=settings.system_prompt,
            progress=progress,
        )


class OpenAIBackend(CachedBackend):
    """Any OpenAI-compatible chat endpoint (temperature 0). Requests run a few at a time."""

    def __init__(self, client: ChatClient, *, cache: KeyValueCache | None = None, concurrency: int = 4) -> None:
        super().__init__(cache)
        self.client = client
        self.concurrency = concurrency
        self.fingerprint = f"openai:{client.base_url}:{client.model}"

    def _generate_uncached(self, prompts: list[str], settings: GenerationSettings, *, progress: bool) -> list[str]:
        def ask(prompt: str) -> str:
            messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
            messages.append({"role": "user", "content": prompt})
            return self.client.chat(messages, max_tokens=settings.max_new_tokens).strip()

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(ask, prompts))


class VLLMBackend(CachedBackend):
    """vLLM offline engine for a local model dir, or a LoRA adapter served on its base through a `LoRARequest`.

    It feeds vLLM the token ids the transformers backend would feed `generate` and decodes with the same stop
    rule (see `vllm_engine`), so both backends share cache keys: a model answered once by either is not asked
    again by the other."""

    def __init__(self, engine: VLLMEngine, tokenizer: PreTrainedTokenizerBase, *, fingerprint: str, decoding: GreedyDecoding, lora: LoRARequest | None = None,
                 cache: KeyValueCache | None = None) -> None:
        super().__init__(cache)
        if getattr(tokenizer, "chat_template", None) is None:
            raise BadInputError("the tokenizer has no chat template; pass --template FILE (a Jinja chat template)")
        self.engine = engine
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.decoding = decoding
        self.lora = lora

    def _settings_key(self, settings: GenerationSettings) -> dict[str, Any]:
        return chat_settings_key(settings, self.tokenizer)

    def prompt_token_ids(self, prompts: Sequence[str], settings: GenerationSettings) -> list[list[int]]:
        from realignkit.evaluation.generation import build_chat_prompts

        texts = build_chat_prompts(self.tokenizer, prompts, settings.system_prompt)
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _generate_uncached(self, prompts: list[str], settings: GenerationSettings, *, progress: bool) -> list[str]:
        return self.engine.generate(self.prompt_token_ids(prompts, settings),
                                    sampling_kwargs(settings.max_new_tokens, self.decoding),
                                    lora=self.lora, progress=progress)

    def close(self) -> None:
        self.engine.close()


def build_vllm_backend(model: Path, base: Path | None, *, fingerprint: str, options: VLLMOptions | None = None,
                       template: str | None = None, allow_pickle: bool = False, dtype: str | None = None,
                       cache: KeyValueCache | None = None) -> VLLMBackend:
    """`--backend vllm` for a model dir, or for an adapter dir on `base` (served as a LoRARequest, not merged)."""
    options = options or VLLMOptions()
    weights_dir = base if base is not None else model
    check_weights(weights_dir, allow_pickle=allow_pickle)
    tokenizer = load_tokenizer(model, fallback=base, template=template)
    rank = None
    if base is not None:
        check_weights(model, allow_pickle=allow_pickle, adapter=True)
        rank = adapter_rank(model)
    kwargs = engine_kwargs(weights_dir, tokenizer_dir(model, base), options, dtype=dtype, lora_rank=rank,
                           allow_pickle=allow_pickle)
    engine = VLLMEngine(kwargs)
    return VLLMBackend(engine, tokenizer, fingerprint=fingerprint, cache=cache,
                       decoding=GreedyDecoding.for_model(weights_dir, tokenizer),
                       lora=lora_request(model) if base is not None else None)
