"""What the model judges (Llama Guard 3, WildGuard, the HarmBench classifier) share: an engine, an identity,
and a refusal fallback.

Guard models classify harm, not refusal. The audit's over-refusal rate needs a refusal verdict on benign
prompts, so a guard model that does not say whether the answer refused (Llama Guard, HarmBench) takes `refused`
from the default offline `refusal` judge; its own verdict decides `harmful`. `describe()` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from realignkit.common import BadInputError
from realignkit.evaluation.judges.base import JudgeBase, Verdict
from realignkit.evaluation.judges.engines import JudgeEngine, load_engine


class ModelJudge(JudgeBase):
    """Base of the guard-model judges: holds the engine and counts unreadable outputs."""

    needs_refusal_fallback = True

    def __init__(self, *, model_path: str | None = None, engine: JudgeEngine | None = None,
                 backend: str = "transformers", device: str | None = None, dtype: str | None = None,
                 batch_size: int = 8, allow_pickle: bool = False, refusal_judge: Any = None, vllm: Any = None) -> None:
        if engine is None:
            if not model_path:
                raise BadInputError(f"judge {self.name!r} needs a checkpoint: --judge {self.name}:PATH_OR_HUB_ID "
                                    "(or --judge-model)")
            engine = load_engine(model_path, backend, device=device, dtype=dtype, batch_size=batch_size,
                                 allow_pickle=allow_pickle, vllm=vllm)
        self.engine = engine
        self.parse_errors = 0
        self.judged = 0
        self._refusal_judge = refusal_judge

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"{self.format_version}+{self.engine.model_id}"

    format_version = "1"

    def refusal_fallback(self, responses: Sequence[str], prompts: Sequence[str]) -> list[Verdict]:
        from realignkit.evaluation.judges.base import judge_verdicts, make_judge

        if self._refusal_judge is None:
            self._refusal_judge = make_judge("refusal")
        return judge_verdicts(self._refusal_judge, responses, prompts)

    def count(self, verdicts: list[Verdict]) -> list[Verdict]:
        self.judged += len(verdicts)
        self.parse_errors += sum(v.parse_error for v in verdicts)
        return verdicts

    def describe(self) -> dict[str, Any]:
        identity = {"name": self.name, "version": self.version, "model": self.engine.model_id,
                    "parse_errors": self.parse_errors, "judged": self.judged,
                    "agreement": "not measured here: no guard-model weights offline"}
        if self.needs_refusal_fallback:
            fallback = self._refusal_judge
            identity["refused_from"] = getattr(fallback, "name", "refusal") if fallback is not None else "refusal"
        return identity
