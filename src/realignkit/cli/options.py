"""Option groups shared by several subcommands (parsing only; the library validates)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from realignkit.common.config import validation_problems
from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from realignkit.evaluation.vllm_engine import VLLMOptions


def add_vllm_arguments(parser: argparse.ArgumentParser) -> None:
    """--tensor-parallel-size, --gpu-memory-utilization, --max-model-len (used with --backend vllm)."""
    group = parser.add_argument_group("vLLM (with --backend vllm; pip install 'realignkit[vllm]')")
    group.add_argument("--tensor-parallel-size", type=int, metavar="N",
                       help="split each model over N GPUs (tensor parallelism; default 1)")
    group.add_argument("--gpu-memory-utilization", type=float, metavar="F",
                       help="share of each GPU's memory vLLM may use, 0 < F <= 1 (default 0.9)")
    group.add_argument("--max-model-len", type=int, metavar="TOKENS",
                       help="context length, prompt + answer (default: the model's)")


def vllm_options_from_args(args: argparse.Namespace) -> VLLMOptions:
    """A VLLMOptions from the flags that were given (defaults for the rest); BadInputError when out of range."""
    from pydantic import ValidationError

    from realignkit.evaluation.vllm_engine import VLLMOptions

    given = {key: getattr(args, key, None) for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")}
    try:
        return VLLMOptions(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        raise BadInputError(f"--{problem.where.split('.')[0].replace('_', '-')}: {problem.message}") from None


def vllm_settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The vLLM flags that were given, as plain values (a sweep stores them in its recipe-shaped settings)."""
    keys = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def vllm_flags_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, key, None) is not None
               for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len"))
