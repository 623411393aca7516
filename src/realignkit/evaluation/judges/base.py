"""What every judge returns, the `Judge` protocol, and the registry behind `--judge NAME`.

A judge has `name`, `version`, `verdicts(responses, prompts) -> list[Verdict]`, `judge_many(responses, prompts)
-> list[bool]` (refused?) and `describe() -> dict` (its identity for results.json). `JudgeBase` supplies
`judge_many` and `describe` from `verdicts`, so a new judge writes only `verdicts`. Older duck-typed judges that
have only `judge_many` still work through `judge_verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from realignkit.common import BadInputError, closest_match

# The three-way label of XSTest's human annotation (Röttger et al., NAACL 2024). A partial refusal is a refusal in
# the usual binary reduction.
ThreeWay = Literal["full_compliance", "full_refusal", "partial_refusal"]
THREE_WAY: tuple[ThreeWay, ...] = ("full_compliance", "full_refusal", "partial_refusal")


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one response.

    refused: the model declined. harmful: the response is judged harmful (None = the judge does not say; the
    audit then counts a harmful-suite item as harmful when it was not refused). score: the judge's own score
    (rubric 1-5, StrongREJECT 0-1, Llama Guard's unsafe probability; its describe() names the scale) or None.
    label: the three-way label when the judge gives one. probability: the judge's probability that the answer is
    a refusal, when it has one. categories: hazard categories named by a guard model. parse_error: a model
    judge's output could not be read (its `refused`/`harmful` then come from the fallback the judge documents).
    prompt_harmful: the judge's view of the request itself (WildGuard says it in the same pass).
    """

    refused: bool
    harmful: bool | None = None
    score: float | None = None
    label: ThreeWay | None = None
    probability: float | None = None
    categories: tuple[str, ...] = ()
    parse_error: bool = False
    prompt_harmful: bool | None = None


@runtime_checkable
class Judge(Protocol):
    """The judge interface every `--judge` name builds."""

    name: str
    version: str

    def verdicts(self, responses: Sequence[str], prompts: Sequence[str]) -> list[Verdict]: ...

    def judge_many(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> list[bool]: ...

    def describe(self) -> dict[str, Any]: ...


class JudgeBase:
    """`judge_many` and `describe` from `verdicts`; subclasses set `name`, `version` and write `verdicts`."""

    name: str = "judge"
    version: str = "0"

    def verdicts(self, responses: Sequence[str], prompts: Sequence[str]) -> list[Verdict]:
        raise NotImplementedError

    def judge_many(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> list[bool]:
        prompts = list(prompts) if prompts is not None else [""] * len(responses)
        return [verdict.refused for verdict in self.verdicts(list(responses), prompts)]

    def describe(self) -> dict[str, Any]:
        from realignkit.evaluation.judges.agreement import measured_agreement

        identity: dict[str, Any] = {"name": self.name, "version": self.version}
        agreement = measured_agreement(self.name, self.version)
        if agreement is not None:
            identity["agreement"] = agreement
        return identity


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
    """Build a judge from a name (`refusal`, `rules`, `rubric`, `classifier`, the guard models ...).

    `NAME:PATH` is a shorthand for the `model_path` option (a local dir or a hub id for model judges). A judge
    object passed in is returned unchanged. Options the judge does not take are an error.
    """
    if not isinstance(spec, str):
        return spec
    name, _, argument = spec.partition(":")
    name = name.replace("-", "_")  # llama-guard and llama_guard are the same judge
    if name not in _REGISTRY:
        raise BadInputError(f"unknown judge {name!r}{closest_match(name, _REGISTRY)}; known: {', '.join(judge_names())}")
    options = {key: value for key, value in options.items() if value is not None}
    if argument:
        if options.get("model_path") not in (None, argument):
            raise BadInputError(f"judge {spec!r} names a checkpoint and --judge-model names another; give one")
        options["model_path"] = argument
    return _REGISTRY[name](**options)
