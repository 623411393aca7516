"""Typed options of the audit: how a backend loads and runs one model (`BackendOptions`), and how `audit_model`
runs beyond what it audits (`AuditOptions`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realignkit.evaluation.backends import GenerationSettings
from realignkit.evaluation.vllm_engine import VLLMOptions


@dataclass(frozen=True)
class BackendOptions:
    """How `make_backend` reaches one model. `aligned` is the base of a PEFT adapter dir (default: the adapter's
    base_model_name_or_path); `template` a Jinja chat template file; `api_*`, `timeout` and `max_retries` are
    for `--backend openai`; `vllm` the engine settings of `--backend vllm`."""

    aligned: str | None = None
    template: str | None = None
    allow_pickle: bool = False
    device: str | None = None
    dtype: str | None = None
    api_base: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 3
    vllm: VLLMOptions | None = None

    def with_base(self, aligned: str | None) -> BackendOptions:
        """The same options for another model, whose adapter base (if any) is `aligned`."""
        return dataclasses.replace(self, aligned=aligned)


@dataclass(frozen=True)
class AuditOptions:
    """Everything `audit_model` takes beyond the model, suites, baseline, judge, limit and output dir.

    `model` are the audited model's backend options; `baseline` the baseline's (default: the model's, with no
    adapter base of their own)."""

    seed: int = 0
    settings: GenerationSettings | None = None
    judge_options: dict[str, Any] | None = None
    backend: str = "transformers"
    model: BackendOptions = field(default_factory=BackendOptions)
    baseline: BackendOptions | None = None
    cache_dir: str | Path | None = None
    use_cache: bool = True
    force: bool = False
    progress: bool = True
    report: bool = True

    def baseline_options(self) -> BackendOptions:
        return self.baseline if self.baseline is not None else self.model.with_base(None)
