"""Expand per-method grids into repair candidates, and drop the ones that add nothing.

A candidate adds nothing when it reproduces a reference (`interpolate alpha=1` is `tuned`, `alpha=0` is
`aligned`), repeats a parameter set already in the sweep, or is mathematically the same model as an earlier
candidate (with one tuned model, `task_arithmetic scale=s` is `interpolate alpha=s`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from realignkit.report.schemas import SplitMetrics


@dataclass(frozen=True)
class Candidate:
    """One repair to try: a method and one point of its grid."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return json.dumps({"method": self.method, "params": self.params}, sort_keys=True, default=str)

    @property
    def id(self) -> str:
        """File-system-safe, readable and unique: `interpolate-alpha0.5-1a2b3c`."""
        readable = "-".join(f"{k}{_short(v)}" for k, v in sorted(self.params.items()))
        readable = re.sub(r"[^A-Za-z0-9.=_-]+", "", readable)[:60]
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:6]
        return f"{self.method}-{readable}-{digest}" if readable else f"{self.method}-{digest}"

    def label(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"{self.method}({inner})"


@dataclass(frozen=True)
class SkippedCandidate:
    candidate: Candidate
    reason: str


class CandidateState(TypedDict, total=False):
    """A candidate's state file in the run dir (JSON): what `CandidateResult` reads."""

    id: str
    method: str
    params: dict[str, Any]
    label: str
    metrics: SplitMetrics
    failed: str
    seconds: dict[str, float]
    attempts: int


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's outcome, as its state file in the run dir holds it: the selection-split metrics, or why
    it failed (`failed`: materializing it raised, or its Ray worker died on every attempt)."""

    id: str
    method: str
    params: dict[str, Any]
    label: str
    metrics: dict[str, Any] | None = None
    failed: str | None = None
    seconds: dict[str, float] | None = None
    attempts: int | None = None  # counted by the Ray executor, which retries a killed worker's candidate

    @classmethod
    def from_state(cls, state: CandidateState) -> CandidateResult:
        return cls(id=state["id"], method=state["method"], params=state["params"], label=state["label"],
                   metrics=state.get("metrics"), failed=state.get("failed"), seconds=state.get("seconds"),
                   attempts=state.get("attempts"))

    def attempts_field(self) -> dict[str, int]:
        """`{"attempts": n}` when the executor counted them, for the rows of sweep.json."""
        return {} if self.attempts is None else {"attempts": self.attempts}


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def expand_grid(method: str, grid: dict[str, list[Any]]) -> list[Candidate]:
    """Cartesian product of the grid's values, in the order given (cheapest settings first)."""
    if not grid:
        return [Candidate(method, {})]
    names = list(grid)
    return [Candidate(method, dict(zip(names, values, strict=True))) for values in itertools.product(*grid.values())]


def _close(a: object, b: float) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and math.isclose(float(a), b, abs_tol=1e-12)


def _single_weight(params: dict[str, Any]) -> float:
    weights = params.get("weights")
    if weights is None:
        return 1.0
    return float(weights[0]) if isinstance(weights, (list, tuple)) and len(weights) == 1 else math.nan


def _canonical(candidate: Candidate) -> tuple[str | None, Candidate]:
    """(reference it equals or None, an equivalent canonical candidate) for one tuned model."""
    method, params = candidate.method, candidate.params
    if method in ("interpolate", "slerp"):
        amount = params.get("alpha", params.get("t"))
        if _close(amount, 1.0):
            return "tuned", candidate
        if _close(amount, 0.0):
            return "aligned", candidate
    if method == "task_arithmetic":
        scale = float(params.get("scale", 1.0)) * _single_weight(params)
        if not math.isnan(scale):
            if _close(scale, 0.0):
                return "aligned", candidate
            if _close(scale, 1.0):
                return "tuned", candidate
            return None, Candidate("interpolate", {"alpha": scale})
    if method == "dare" and _close(params.get("density"), 1.0):
        # Keeping every entry with probability 1 is plain task arithmetic.
        return _canonical(Candidate("task_arithmetic", {"scale": params.get("scale", 1.0)}))
    if method == "resta" and _close(params.get("beta"), 0.0) and params.get("dare_density") is None:
        return "tuned", candidate
    if method == "antidote" and _close(params.get("alpha"), 0.0):
        return "tuned", candidate
    return None, candidate


def plan_candidates(grids: dict[str, dict[str, list[Any]]], *, tuned_count: int = 1) -> tuple[
    list[Candidate], list[SkippedCandidate]
]:
    """All candidates to evaluate, in order, plus the ones skipped with the reason why."""
    keep: list[Candidate] = []
    skipped: list[SkippedCandidate] = []
    seen: dict[str, Candidate] = {}
    for method, grid in grids.items():
        for candidate in expand_grid(method, grid):
            reference, canonical = _canonical(candidate) if tuned_count == 1 else (None, candidate)
            if reference is not None:
                skipped.append(SkippedCandidate(candidate, f"same model as the `{reference}` reference"))
                continue
            if canonical.key in seen:
                twin = seen[canonical.key]
                why = "repeats" if twin == candidate else "is the same model as"
                skipped.append(SkippedCandidate(candidate, f"{why} {twin.label()}"))
                continue
            seen[canonical.key] = candidate
            keep.append(candidate)
    return keep, skipped
