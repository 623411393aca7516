"""`sweep --executor ray`: each candidate's materialize -> generate -> judge is one Ray task (Moritz et al. 2018,
"Ray: A Distributed Framework for Emerging AI Applications"), with declared resources, writing to the shared
--out; the reference evaluations and the winner's test evaluation are tasks too, so the driver needs no GPU.

Failure rules:
- a task whose worker dies (killed, out of memory, node lost) is retried once by Ray (`max_retries=1`); if the
  retry dies too, the candidate is recorded as failed with the reason, never silently dropped;
- an exception inside a task is not retried (`retry_exceptions=False`): it is re-raised here as it would be by
  the local executor (a BadInputError from a repair method was already recorded as that candidate's failure).

Every attempt leaves a marker in `<work>/work/attempts/`, so each candidate's state says how many it took.
Without --ray-address the executor starts a local Ray instance (`address="local"`, even if RAY_ADDRESS is set,
with Ray's usage reporting off unless RAY_USAGE_STATS_ENABLED=1) and shuts it down when the sweep ends; with an
address it connects, and only disconnects.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from realignkit.common import BadInputError
from realignkit.pipeline.candidates import Candidate
from realignkit.pipeline.executor_options import ExecutorOptions
from realignkit.pipeline.jobs import SweepJob, build_winner, candidate_row, evaluate_model, run_candidate

if TYPE_CHECKING:
    from realignkit.pipeline.candidates import CandidateState
    from realignkit.report.schemas import JudgeIdentity, SplitMetrics

RETRIES = 1  # a killed worker's task runs once more, then its candidate is recorded as failed


class WorkerLost(RuntimeError):
    """A task's worker died on every attempt (not an exception raised by the task itself)."""


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise BadInputError("--executor ray needs the ray package: pip install 'realignkit[ray]'") from None
    return ray


def _attempt(job: SweepJob, key: str) -> int:
    """Claim the next attempt number of `key` with an exclusive marker file (visible to every node)."""
    folder = job.run.scratch / "attempts"
    folder.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        try:
            with open(folder / f"{key}.{number}", "x") as handle:
                handle.write(str(os.getpid()))
            return number
        except FileExistsError:
            number += 1


def attempts_made(job: SweepJob, key: str) -> int:
    return len(list((job.run.scratch / "attempts").glob(f"{key}.*")))


def candidate_task(job: SweepJob, candidate: Candidate) -> CandidateState:
    """One Ray task: materialize -> generate -> judge, state saved to the shared run dir and returned."""
    return run_candidate(job, candidate, extra={"attempts": _attempt(job, candidate.id)})


def evaluate_task(job: SweepJob, model: Path, split: str) -> SplitMetrics:
    return evaluate_model(job, model, split)


def winner_task(job: SweepJob, candidate: Candidate) -> tuple[SplitMetrics, SplitMetrics]:
    """The winner's test metrics, and the identity of the judge that produced them (built from the config)."""
    evaluator = job.evaluator()
    return build_winner(job, candidate, evaluator), evaluator.judge_info


def judge_info_task(job: SweepJob) -> JudgeIdentity:
    return job.evaluator().judge_info


class RayExecutor:
    name = "ray"

    def __init__(self, job: SweepJob, options: ExecutorOptions) -> None:
        ray = _import_ray()
        self.ray, self.options, self.log = ray, options, []
        self.started_here = False
        if not ray.is_initialized():
            self._connect()
        # vLLM inside a task that already holds its GPUs must not ask Ray for more: its own processes instead.
        vllm = job.backend_options.get("vllm")
        if vllm is not None and vllm.distributed_executor_backend is None:
            job.backend_options["vllm"] = vllm.model_copy(update={"distributed_executor_backend": "mp"})
        job = dataclasses.replace(job, judge=None)  # workers build the judge from the config, not a pickled model
        self.job_ref = ray.put(job)
        self._judge_info: dict[str, Any] | None = None
        resources: dict[str, Any] = {"num_cpus": options.cpus_per_candidate, "max_retries": RETRIES,
                                     "retry_exceptions": False}
        if options.gpus_per_candidate:
            resources.update(num_gpus=options.gpus_per_candidate, max_calls=1)  # a fresh process frees the GPU
        if options.memory_per_candidate:
            resources["memory"] = options.memory_per_candidate
        self.tasks = {fn.__name__: ray.remote(**resources)(fn)
                      for fn in (candidate_task, evaluate_task, winner_task, judge_info_task)}
        self.job = job

    def _connect(self) -> None:
        ray, options = self.ray, self.options
        quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
        try:
            if options.ray_address is None:
                # No network at run time: Ray's usage reports (on unless disabled) stay off unless the user opts in.
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(address="local", num_cpus=options.ray_num_cpus, **quiet)
                self.log.append(f"ray: started a local Ray instance "
                                f"({ray.cluster_resources().get('CPU', 0):g} CPUs); it stops with the sweep")
            else:
                ray.init(address=options.ray_address, logging_level=logging.WARNING)
                self.log.append(f"ray: connected to {options.ray_address}")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = options.ray_address or "a local instance"
            raise BadInputError(f"--executor ray: cannot start or reach Ray ({where}): {str(exc).splitlines()[0]}") from None
        self.started_here = True

    def _get(self, ref: Any, what: str) -> Any:
        """ray.get, with a task's own exception re-raised as itself (one line for a BadInputError)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from exc  # the CLI shows a BadInputError or OSError as one line, a bug with both tracebacks
            raise
        except self.ray.exceptions.RayError as exc:
            raise WorkerLost(f"the Ray worker {what} died {RETRIES + 1} times ({_one_line(exc)}); "
                             "rerun the same command to resume") from None

    def evaluate(self, requests: list[tuple[Path, str]]) -> list[SplitMetrics]:
        refs = [self.tasks["evaluate_task"].remote(self.job_ref, path, split) for path, split in requests]
        return [self._get(ref, f"evaluating {path} on the {split} split")
                for ref, (path, split) in zip(refs, requests, strict=True)]

    def candidates(self, pending: list[Candidate]) -> Iterator[tuple[Candidate, CandidateState]]:
        """Every pending candidate at once; results in the order they finish."""
        waiting = {self.tasks["candidate_task"].remote(self.job_ref, c): c for c in pending}
        try:
            while waiting:
                (done,), _ = self.ray.wait(list(waiting), num_returns=1)
                candidate = waiting.pop(done)
                yield candidate, self._candidate_result(done, candidate)
        finally:
            for ref in waiting:  # an exception (or the caller stopping) leaves nothing running
                self.ray.cancel(ref, force=True)

    def _candidate_result(self, ref: Any, candidate: Candidate) -> CandidateState:
        try:
            state = self._get(ref, f"running {candidate.label()}")
        except WorkerLost:
            attempts = attempts_made(self.job, candidate.id)
            state = candidate_row(candidate, attempts=attempts,
                                  failed=f"its Ray worker died on all {attempts} attempts "
                                         "(killed, out of memory or node lost)")
            self.job.run.save_state(candidate.id, state)
            self.log.append(f"ray: {candidate.label()} failed: {state['failed']}")
            return state
        if state.get("attempts", 1) > 1:
            self.log.append(f"ray: {candidate.label()} finished on attempt {state['attempts']} (a worker died)")
        if self.job.run.load_state(candidate.id) is None:  # a worker that did not share --out
            self.job.run.save_state(candidate.id, state)
        return state

    def winner(self, candidate: Candidate, test_requests: list[tuple[Path, str]]) -> tuple[SplitMetrics, list[SplitMetrics]]:
        winner_ref = self.tasks["winner_task"].remote(self.job_ref, candidate)
        references = self.evaluate(test_requests)
        metrics, self._judge_info = self._get(winner_ref, f"evaluating the winner {candidate.label()}")
        return metrics, references

    def judge_info(self) -> JudgeIdentity:
        """The judge as the worker that evaluated the winner built it. A model judge's running counters
        (parse errors, items judged) are that worker's, not the whole sweep's."""
        if self._judge_info is None:
            self._judge_info = self._get(self.tasks["judge_info_task"].remote(self.job_ref), "describing the judge")
        return self._judge_info

    def describe(self) -> dict[str, Any]:
        options = self.options
        return {"name": self.name, "address": options.ray_address or "local",
                "per_candidate": {"cpus": options.cpus_per_candidate, "gpus": options.gpus_per_candidate,
                                  "memory_bytes": options.memory_per_candidate},
                "max_retries": RETRIES}

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()
            self.started_here = False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
