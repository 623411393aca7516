"""Who runs a sweep's units of work (`jobs.py`): this process one after another (`local`, the default), or a Ray
cluster, one task per candidate (`ray`, see ray_executor.py). Both give the same sweep.json: the run dir, its
resume rule and the summary are the sweep's own; an executor only decides where the work happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from realignkit.pipeline.candidates import Candidate
from realignkit.pipeline.executor_options import EXECUTORS, ExecutorOptions, parse_memory
from realignkit.pipeline.jobs import SweepJob, build_winner, evaluate_model, run_candidate

if TYPE_CHECKING:
    from realignkit.pipeline.candidates import CandidateState
    from realignkit.report.schemas import JudgeIdentity, SplitMetrics

__all__ = ["EXECUTORS", "ExecutorOptions", "LocalExecutor", "SweepExecutor", "make_executor", "parse_memory"]


class SweepExecutor(Protocol):
    """What the sweep asks of an executor (`LocalExecutor`, `RayExecutor`)."""

    name: str

    def evaluate(self, requests: list[tuple[Path, str]]) -> list[SplitMetrics]: ...

    def candidates(self, pending: list[Candidate]) -> Iterator[tuple[Candidate, CandidateState]]: ...

    def winner(self, candidate: Candidate, test_requests: list[tuple[Path, str]]) -> tuple[SplitMetrics, list[SplitMetrics]]: ...

    def judge_info(self) -> JudgeIdentity: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Everything in this process, one model at a time (one evaluator, reused)."""

    name = "local"

    def __init__(self, job: SweepJob) -> None:
        self.job = job
        self.evaluator = job.evaluator()
        self.log: list[str] = []

    def evaluate(self, requests: list[tuple[Path, str]]) -> list[SplitMetrics]:
        return [evaluate_model(self.job, path, split, self.evaluator) for path, split in requests]

    def candidates(self, pending: list[Candidate]) -> Iterator[tuple[Candidate, CandidateState]]:
        for candidate in pending:
            yield candidate, run_candidate(self.job, candidate, self.evaluator)

    def winner(self, candidate: Candidate, test_requests: list[tuple[Path, str]]) -> tuple[SplitMetrics, list[SplitMetrics]]:
        """The winner's test metrics, and the metrics of `test_requests` (the references on the test split)."""
        return build_winner(self.job, candidate, self.evaluator), self.evaluate(test_requests)

    def judge_info(self) -> JudgeIdentity:
        """The judge that decided every verdict of the sweep (with its running counters)."""
        return self.evaluator.judge_info

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:
        pass


def make_executor(options: ExecutorOptions, job: SweepJob) -> SweepExecutor:
    if options.name == "ray":
        from realignkit.pipeline.ray_executor import RayExecutor

        return RayExecutor(job, options)
    return LocalExecutor(job)
