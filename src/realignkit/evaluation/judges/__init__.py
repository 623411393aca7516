"""Judges decide, per (prompt, response), whether the model refused (and, for some, how harmful it was).

`make_judge("refusal" | "rubric" | "classifier" | "classifier:PATH", **options)` builds one by name
(`--judge NAME`); `judge_verdicts(judge, responses, prompts)` returns `Verdict`s from any judge.
"""

from __future__ import annotations

from typing import Any

from realignkit.evaluation.judges.base import Verdict, judge_names, judge_verdicts, make_judge, register_judge
from realignkit.evaluation.judges.refusal import RefusalJudge


@register_judge("refusal")
def _refusal(**options: Any) -> Any:
    if options:
        from realignkit.common import BadInputError

        raise BadInputError(f"judge 'refusal' takes no options, got {', '.join(sorted(options))}")
    return RefusalJudge()


@register_judge("rubric")
def _rubric(**options: Any) -> Any:
    from realignkit.evaluation.judges.rubric import RubricJudge

    return RubricJudge(**options)


@register_judge("classifier")
def _classifier(**options: Any) -> Any:
    from realignkit.evaluation.judges.classifier import ClassifierJudge

    return ClassifierJudge(**options)


def judge_identity(judge: Any) -> dict[str, Any]:
    """{"name", "version", ...} for results.json and judged rows."""
    if hasattr(judge, "describe"):
        return dict(judge.describe())
    return {"name": getattr(judge, "name", type(judge).__name__), "version": str(getattr(judge, "version", "?"))}


__all__ = [
    "RefusalJudge",
    "Verdict",
    "judge_identity",
    "judge_names",
    "judge_verdicts",
    "make_judge",
    "register_judge",
]
