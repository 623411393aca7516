"""The JSON documents realignkit writes and its reports read, as typed dicts: what each key holds.

- `AuditResults`: results.json of `realignkit audit` (with `SuiteSummary` per reported suite);
- `SweepSummary`: sweep.json of `realignkit sweep`;
- `JudgeIdentity`: the judge that decided every verdict (in both).

They are `TypedDict`s (plain dicts at run time, read back from JSON): a reader sees the keys, a writer adds them.
"""

from __future__ import annotations

from typing import Any, TypedDict


class JudgeIdentity(TypedDict, total=False):
    """The judge's `describe()`: name and version, and, where measured, its agreement with human labels."""

    name: str
    version: str
    agreement: dict[str, Any]


class SuiteSummary(TypedDict, total=False):
    """One reported suite of results.json: its kind, counts, rates with Wilson 95 % intervals (`ci95`), the
    same per category, and with a baseline: `flips`, `baseline` and `delta`."""

    kind: str
    n: int
    n_degenerate: int
    degenerate_rate: float | None
    refusal_rate: float | None
    harmful_rate: float | None
    over_refusal_rate: float | None
    accuracy: float | None
    harmfulness_score: float | None
    ci95: dict[str, list[float]]
    by_category: dict[str, dict[str, Any]]
    flips: dict[str, Any] | None
    baseline: dict[str, Any] | None
    delta: dict[str, float | None] | None


class AuditResults(TypedDict, total=False):
    """results.json: the audit's single source (the report reads only this)."""

    model: str
    model_fingerprint: str
    baseline: str | None
    judge: JudgeIdentity
    degenerate_detector: dict[str, Any]
    denominators: dict[str, str]
    generation: dict[str, Any]
    n_items: int
    overall: OverallSummary
    suites: dict[str, SuiteSummary]
    items: str
    created: str
    baseline_fingerprint: str
    baseline_overall: OverallSummary
    overall_delta: dict[str, float | None]
    flipped_items: list[dict[str, Any]]


class SweepSummary(TypedDict, total=False):
    """sweep.json: inputs and splits, the references and every candidate on the selection split, the Pareto
    front, the winner (with its test-split figures once built), the statistics behind the pick, the judge."""

    format: int
    inputs: dict[str, str | None]
    utility_floor: float
    splits: dict[str, dict[str, int]]
    references: dict[str, dict[str, Any]]
    candidates: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    notes: list[str]
    pareto_front: list[str]
    winner: dict[str, Any]
    pick_vs_runner_up: dict[str, Any]
    warnings: list[str]
    statistics: dict[str, Any]
    objectives: dict[str, str]
    execution: dict[str, Any]
    judge: JudgeIdentity
    pushed: str  # the hub commit URL, when `push_to_hub` uploaded the winner


class ItemRow(TypedDict, total=False):
    """One judged item (a line of items.jsonl): the suite item, the answer and its verdicts. A degenerate answer
    (gibberish, loops, empty) has refused/harmful/score None and ok False."""

    id: str
    prompt: str
    kind: str
    category: str
    answer: str | None
    suite: str
    meta: dict[str, Any]
    response: str
    degenerate: bool
    refused: bool | None
    harmful: bool | None
    score: float | None
    correct: bool | None
    ok: bool
    label: str
    probability: float
    categories: list[str]
    judge_parse_error: bool
    prompt_harmful: bool


class SplitMetrics(TypedDict, total=False):
    """A model's figures on one split of a sweep: the rates the pick uses, counts, the per-item outcomes that
    intervals and paired tests need (`items`: kind -> suite -> item id -> outcome) and where the answers came
    from (`generated` now, `cached`)."""

    harmful_rate: float | None
    over_refusal_rate: float | None
    utility: float | None
    utility_by_suite: dict[str, float]
    degenerate_rate: float | None
    degenerate_by_kind: dict[str, float]
    n: dict[str, int]
    split: str
    fingerprint: str
    generated: int
    cached: int
    items: dict[str, dict[str, dict[str, bool]]]


class OverallSummary(TypedDict, total=False):
    """results.json's headline numbers across suites (`overall`), with Wilson 95 % intervals (`ci95`)."""

    n: int
    n_degenerate: int
    degenerate_rate: float | None
    harmful_rate: float | None
    harmful_refusal_rate: float | None
    harmfulness_score: float | None
    over_refusal_rate: float | None
    utility_accuracy: float | None
    ci95: dict[str, list[float] | None]


class Interval(TypedDict, total=False):
    """A Wilson 95 % interval of a rate: bounds, k successes of n items (a mean over utility suites: `suites`)."""

    low: float
    high: float
    k: int
    n: int
    suites: int


class RateIntervals(TypedDict, total=False):
    """sweep.json's `ci95` of one model on one split (None where there is nothing to count)."""

    harmful_rate: Interval | None
    over_refusal_rate: Interval | None
    utility: Interval | None
    utility_by_suite: dict[str, Interval]


class PairedComparison(TypedDict, total=False):
    """Two candidates' per-item outcomes of one kind on the items both were judged on (exact McNemar test,
    Newcombe interval of the difference)."""

    kind: str
    n: int
    pick_rate: float
    runner_up_rate: float
    difference: float
    ci95: list[float] | None
    discordant: dict[str, int]
    test: str
    interval: str
    p_value: float
    distinguishable: bool


class CandidateSide(TypedDict, total=False):
    """One side of `pick_vs_runner_up`: the candidate and its metrics on the split (with per-item outcomes)."""

    id: str
    label: str
    meets_floor: bool
    metrics: SplitMetrics
