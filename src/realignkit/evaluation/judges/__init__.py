"""Judges decide, per (prompt, response), whether the model refused (and, for some, how harmful it was).

`make_judge(NAME, **options)` builds one by name (`--judge NAME`; `NAME:PATH` gives a model judge its checkpoint);
every judge follows the `Judge` protocol (`base.py`) and returns `Verdict`s. Names:

- `refusal` (default, offline): the refusal rules, with a small calibrated probe on SmolLM2-135M-Instruct hidden
  states deciding where the rules are unsure; three-way labels (`refusal_probe.py`).
- `rules`: the refusal rules alone (no model; `refusal.py`).
- `rubric`: Qi et al.'s 1-5 harmfulness rubric over an OpenAI-compatible endpoint.
- `strongreject`: the StrongREJECT rubric over an OpenAI-compatible endpoint.
- `classifier:PATH`: any local sequence-classification model.
- `llama_guard:PATH`, `wildguard:PATH`, `harmbench:PATH`: the guard models practitioners use, each with its
  published prompt format, on transformers or vLLM (`engines.py`).

`bench_judges.py` (benchmarks/) measures them against human labels; `agreement.json` keeps what it measured.
"""

from __future__ import annotations

from typing import Any

from realignkit.evaluation.judges.base import (
    Judge,
    JudgeBase,
    Verdict,
    judge_names,
    judge_verdicts,
    make_judge,
    register_judge,
)
from realignkit.evaluation.judges.refusal import RefusalJudge


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        from realignkit.common import BadInputError

        raise BadInputError(f"judge {name!r} takes no options, got {', '.join(sorted(options))}")


@register_judge("refusal")
def _refusal(**options: Any) -> Any:
    from realignkit.evaluation.judges.refusal_probe import ProbedRefusalJudge

    return ProbedRefusalJudge(**options)


@register_judge("rules")
def _rules(**options: Any) -> Any:
    _no_options("rules", options)
    return RefusalJudge()


@register_judge("rubric")
def _rubric(**options: Any) -> Any:
    from realignkit.evaluation.judges.rubric import RubricJudge

    return RubricJudge(**options)


@register_judge("strongreject")
def _strongreject(**options: Any) -> Any:
    from realignkit.evaluation.judges.strongreject import StrongRejectJudge

    return StrongRejectJudge(**options)


@register_judge("classifier")
def _classifier(**options: Any) -> Any:
    from realignkit.evaluation.judges.classifier import ClassifierJudge

    return ClassifierJudge(**options)


@register_judge("llama_guard")
def _llama_guard(**options: Any) -> Any:
    from realignkit.evaluation.judges.llama_guard import LlamaGuardJudge

    return LlamaGuardJudge(**options)


@register_judge("wildguard")
def _wildguard(**options: Any) -> Any:
    from realignkit.evaluation.judges.wildguard import WildGuardJudge

    return WildGuardJudge(**options)


@register_judge("harmbench")
def _harmbench(**options: Any) -> Any:
    from realignkit.evaluation.judges.harmbench import HarmBenchJudge

    return HarmBenchJudge(**options)


def judge_identity(judge: Any) -> dict[str, Any]:
    """{"name", "version", ...} for results.json and judged rows."""
    if hasattr(judge, "describe"):
        return dict(judge.describe())
    return {"name": getattr(judge, "name", type(judge).__name__), "version": str(getattr(judge, "version", "?"))}


__all__ = [
    "Judge",
    "JudgeBase",
    "RefusalJudge",
    "Verdict",
    "judge_identity",
    "judge_names",
    "judge_verdicts",
    "make_judge",
    "register_judge",
]
