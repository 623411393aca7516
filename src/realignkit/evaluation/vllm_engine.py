"""vLLM (Kwon et al. 2023, "Efficient Memory Management for Large Language Model Serving with PagedAttention"),
imported only when chosen: engine arguments, greedy decoding mapped one to one from our generation settings,
LoRA adapters served as `LoRARequest`s instead of merged, and a classification pass for model judges.

The mapping, from what the transformers backend does (`generation.generate_responses`) to `SamplingParams`:

| transformers backend                                        | vLLM                                           |
|-------------------------------------------------------------|------------------------------------------------|
| chat template + system prompt, tokenised without specials   | the same token ids, passed as `prompt_token_ids` |
| `do_sample=False` (greedy)                                  | `temperature=0.0`                              |
| `max_new_tokens`                                            | `max_tokens`                                   |
| `eos_token_id=tokenizer.eos_token_id`: only that id stops   | `stop_token_ids=[that id]`, `ignore_eos=True`  |
| `repetition_penalty` / `min_new_tokens` of generation_config | `repetition_penalty` / `min_tokens`           |
| `batch_decode(skip_special_tokens=True)`, stripped          | `skip_special_tokens=True`, stripped           |
| `batch_size`                                                | none: vLLM batches continuously (not in the cache key either) |

`ignore_eos=True` matters: without it vLLM also stops at every `eos_token_id` listed in generation_config.json,
which transformers does not when it is given one explicit id. Since the prompts, the decoding and the stop rule
are the same, the cache key is the same: (weights fingerprint, prompt, max_new_tokens, system_prompt, sha256 of
the chat template). generation_config.json keys that change greedy output and have no vLLM counterpart are
refused rather than silently ignored.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from realignkit.common import BadInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from vllm import LLM
    from vllm.lora.request import LoRARequest

# vLLM only accepts these as --max-lora-rank; an adapter of rank r needs the smallest one >= r.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# generation_config.json keys that change greedy decoding in transformers but have no vLLM sampling field.
_UNMAPPED_GREEDY_KEYS = ("no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "suppress_tokens",
                         "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id", "sequence_bias",
                         "exponential_decay_length_penalty", "min_length")
_NEUTRAL = {"repetition_penalty": 1.0, "min_new_tokens": 0, "no_repeat_ngram_size": 0,
            "encoder_no_repeat_ngram_size": 0, "min_length": 0}


class VLLMOptions(BaseModel):
    """Engine settings of `--backend vllm` (see `vllm.LLM`). None of them changes greedy answers' cache keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over (tensor parallelism)")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="share of GPU memory vLLM may take")
    max_model_len: int | None = Field(None, ge=1, description="context length (prompt + answer); default: the model's")
    # "mp" inside a Ray task: the task already holds its GPUs, so vLLM must not ask Ray for more.
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    enforce_eager: bool = False


def import_vllm() -> ModuleType:
    try:
        import vllm
    except ImportError as exc:
        raise BadInputError("backend 'vllm' needs the vllm package (a CUDA machine): "
                            "pip install 'realignkit[vllm]'") from exc
    return vllm


def lora_rank_limit(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds an adapter of rank `rank`."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise BadInputError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank {LORA_RANKS[-1]}; "
                        "use --backend transformers (it merges the adapter)")


def adapter_rank(adapter_dir: Path) -> int:
    """The adapter's rank, refusing what vLLM's LoRA cannot serve (DoRA, modules_to_save)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_dora"):
        raise BadInputError(f"{str(adapter_dir)!r} is a DoRA adapter, which vLLM does not serve; "
                            "use --backend transformers")
    if config.get("modules_to_save"):
        raise BadInputError(f"{str(adapter_dir)!r} saves whole modules ({', '.join(config['modules_to_save'])}), "
                            "which vLLM's LoRA does not load; use --backend transformers")
    ranks = [int(config.get("r", 8)), *[int(v) for v in (config.get("rank_pattern") or {}).values()]]
    return max(ranks)


def model_dtype(model_dir: Path, dtype: str | None) -> str:
    """An explicit dtype for vLLM: its "auto" turns float32 checkpoints into float16, transformers' does not."""
    if dtype not in (None, "auto"):
        return str(dtype)
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    found = config.get("dtype") or config.get("torch_dtype") or "auto"
    return str(found).removeprefix("torch.")


@dataclass(frozen=True)
class GreedyDecoding:
    """What stops and shapes greedy decoding, read from the tokenizer and generation_config.json."""

    stop_token_id: int
    repetition_penalty: float = 1.0
    min_new_tokens: int = 0

    @classmethod
    def for_model(cls, model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> GreedyDecoding:
        if tokenizer.eos_token_id is None:
            raise BadInputError(f"the tokenizer of {str(model_dir)!r} has no eos token; vLLM would never stop")
        path = model_dir / "generation_config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        unmapped = [key for key in _UNMAPPED_GREEDY_KEYS if config.get(key) not in (None, _NEUTRAL.get(key), [])]
        if unmapped:
            raise BadInputError(f"{str(path)!r} sets {', '.join(unmapped)}, which vLLM cannot apply the way "
                                "transformers does; use --backend transformers")
        return cls(int(tokenizer.eos_token_id), float(config.get("repetition_penalty") or 1.0),
                   int(config.get("min_new_tokens") or 0))


def sampling_kwargs(max_new_tokens: int, decoding: GreedyDecoding) -> dict[str, Any]:
    """`SamplingParams(**these)`: greedy, one answer, the transformers backend's stop rule (module doc)."""
    return {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": max_new_tokens,
        "stop_token_ids": [decoding.stop_token_id],
        "ignore_eos": True,
        "repetition_penalty": decoding.repetition_penalty,
        "min_tokens": decoding.min_new_tokens,
        "skip_special_tokens": True,
    }


def engine_kwargs(model_dir: Path, tokenizer_dir: Path, options: VLLMOptions, *, dtype: str | None = None,
                  lora_rank: int | None = None, allow_pickle: bool = False) -> dict[str, Any]:
    """`LLM(**these)` for a local model dir (never a hub id: nothing is downloaded)."""
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "tokenizer": str(tokenizer_dir),
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "dtype": model_dtype(model_dir, dtype),
        "seed": 0,
        "enforce_eager": options.enforce_eager,
    }
    if not allow_pickle:
        kwargs["load_format"] = "safetensors"
    if options.max_model_len is not None:
        kwargs["max_model_len"] = options.max_model_len
    if options.distributed_executor_backend is not None:
        kwargs["distributed_executor_backend"] = options.distributed_executor_backend
    if lora_rank is not None:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_limit(lora_rank))
    return kwargs


def lora_request(adapter_dir: Path, adapter_id: int = 1) -> LoRARequest:
    """vLLM's request to run one prompt batch through the adapter at `adapter_dir` (on the engine's base)."""
    import_vllm()
    from vllm.lora.request import LoRARequest

    return LoRARequest(adapter_dir.name or "adapter", adapter_id, str(adapter_dir))


def token_prompts(token_ids: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """vLLM's TokensPrompt form: the ids are used as they are (no BOS added, no template applied)."""
    return [{"prompt_token_ids": list(ids)} for ids in token_ids]


class VLLMEngine:
    """One `vllm.LLM`, created on first use and released by `close()` (GPU memory goes back)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        import_vllm()
        self.kwargs = kwargs
        self._llm: Any = None

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(**self.kwargs)
        return self._llm

    def generate(self, token_ids: Sequence[Sequence[int]], sampling: dict[str, Any], *, lora: LoRARequest | None = None,
                 progress: bool = False) -> list[str]:
        """Greedy answers (stripped) to prompts given as token ids, in order."""
        from vllm import SamplingParams

        options: dict[str, Any] = {"use_tqdm": progress}
        if lora is not None:
            options["lora_request"] = lora
        outputs = self.llm.generate(token_prompts(token_ids), SamplingParams(**sampling), **options)
        return [output.outputs[0].text.strip() for output in outputs]

    def classify(self, token_ids: Sequence[Sequence[int]], *, progress: bool = False) -> list[list[float]]:
        """Class probabilities of a sequence-classification model, per prompt (vLLM's pooling runner)."""
        outputs = self.llm.classify(token_prompts(token_ids), use_tqdm=progress)
        return [list(output.outputs.probs) for output in outputs]

    def close(self) -> None:
        if self._llm is None:
            return
        # vLLM's documented way out: drop the last reference (its engine process exits), collect, empty the cache.
        self._llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a base dependency
            pass
