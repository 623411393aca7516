"""`--backend NAME`: the generation backends by name (transformers, openai, vllm), and `make_backend`.

Every cache key of a local model starts with `common.weights_fingerprint(model, its adapter base)` (plus
`:template` when a chat template file is supplied), whichever engine generates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from realignkit.common import weights_fingerprint
from realignkit.common.plugins import Registry
from realignkit.evaluation.audit_options import BackendOptions
from realignkit.evaluation.backends import Backend, OpenAIBackend, TransformersBackend, build_vllm_backend
from realignkit.evaluation.cache import KeyValueCache

BackendFactory = Callable[[str, BackendOptions, KeyValueCache | None], Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def make_backend(model: str, backend: str = "transformers", *, cache: KeyValueCache | None = None,
                 options: BackendOptions | None = None) -> Backend:
    """A generation backend for `model` (a model or adapter dir, or an endpoint's model name for openai)."""
    return BACKENDS.get(backend)(model, options or BackendOptions(), cache)


@BACKENDS.register("openai")
def _openai(model: str, opts: BackendOptions, cache: KeyValueCache | None) -> Backend:
    from realignkit.evaluation.openai_client import ChatClient

    client = ChatClient.from_options(opts.api_base, model, api_key_env=opts.api_key_env, timeout=opts.timeout,
                                     max_retries=opts.max_retries)
    return OpenAIBackend(client, cache=cache)


def _local_model(model: str, opts: BackendOptions) -> tuple[Path | None, str]:
    """(adapter base or None, cache fingerprint) of a local model dir; quantised inputs are refused first."""
    from realignkit.evaluation.audit_loading import adapter_base, check_quantised_inputs

    base = adapter_base(model, opts.aligned)
    check_quantised_inputs(Path(model), None if base is None else Path(base))  # before hashing any weights
    fingerprint = weights_fingerprint(model, base)
    if opts.template is not None:  # a supplied template changes the prompts, so it is part of the key
        fingerprint += ":template"
    return (None if base is None else Path(base)), fingerprint


@BACKENDS.register("transformers")
def _transformers(model: str, opts: BackendOptions, cache: KeyValueCache | None) -> Backend:
    from realignkit.evaluation.audit_loading import load_model_for_audit

    _, fingerprint = _local_model(model, opts)
    loaded, tokenizer = load_model_for_audit(model, aligned=opts.aligned, template=opts.template,
                                             allow_pickle=opts.allow_pickle, device=opts.device, dtype=opts.dtype)
    return TransformersBackend(loaded, tokenizer, fingerprint=fingerprint, cache=cache)


@BACKENDS.register("vllm")
def _vllm(model: str, opts: BackendOptions, cache: KeyValueCache | None) -> Backend:
    base, fingerprint = _local_model(model, opts)
    return build_vllm_backend(Path(model), base, fingerprint=fingerprint, options=opts.vllm, template=opts.template,
                              allow_pickle=opts.allow_pickle, dtype=opts.dtype, cache=cache)
