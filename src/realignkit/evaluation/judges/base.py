"""What every judge returns, and the registry behind `--judge NAME`.

A judge has `name`, `version` and `judge_many(responses, prompts) -> list[bool]` (refused?). Judges that can
say more (a 1-5 harmfulness score, a harmful/unsafe label) also provide `verdicts(responses, prompts)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from realignkit.common import BadInputError, closest_match


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one response.

    refused: the model declined. harmful: the response is judged harmful (None = the judge does not say; the
    audit then counts a harmful-suite item as harmful when it was not refused). score: 1-5 rubric score or None.
    """

    refused: bool
    harmful: bool | None = None
    score: float | None = None


class Judge(Protocol):
    name: str
    version: str

    def judge_many(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> list[bool]: ...


def judge_verdicts(judge: Any, responses: Sequence[str], prompts: Sequence[str]) -> list[Verdict]:
    """Verdicts from any judge: its own `verdicts` when it has one, else refusal booleans."""
    if hasattr(judge, "verdicts"):
        return list(judge.verdicts(list(responses), list(prompts)))
    return [Verdict(refused=bool(flag)) for flag in judge.judge_many(list(responses), list(prompts))]


JudgeFactory = Callable[..., Any]
_REGISTRY: dict[str, JudgeFactory] = {}


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Decorator: make a judge factory available as `--judge NAME`."""

    def wrap(factory: JudgeFactory) -> JudgeFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def judge_names() -> list[str]:
    return sorted(_REGISTRY)


def make_judge(spec: str | Any = "refusal", **options: Any) -> Any:
    """Build a judge from a name (`refusal`, `rubric`, `classifier`; `classifier:PATH` is a shorthand).

    A judge object passed in is returned unchanged. Options the judge does not take are an error.
    """
    if not isinstance(spec, str):
        return spec
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise BadInputError(f"unknown judge {name!r}{closest_match(name, _REGISTRY)}; known: {', '.join(judge_names())}")
    if argument:
        options.setdefault("model_path", argument)
    options = {key: value for key, value in options.items() if value is not None}
    return _REGISTRY[name](**options)
