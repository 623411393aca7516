"""The units of work of a sweep, the same whichever executor runs them (this process, or a Ray worker):

- `run_candidate`: materialize one candidate, generate on the selection split, judge -> its state, saved;
- `evaluate_model`: a reference model (aligned, tuned) on one split -> metrics;
- `build_winner`: materialize the winner into `<work>/winner` (unless there) and evaluate it on the test split.

A `SweepJob` carries everything they need and nothing process-bound, so it can be pickled to another machine;
every path in it must be one that machine sees (a shared --out, shared inputs).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common import BadInputError
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.pipeline.candidates import Candidate
from realignkit.pipeline.rundir import RunDir
from realignkit.pipeline.sweep_config import SweepConfig

if TYPE_CHECKING:
    from realignkit.pipeline.candidates import CandidateState
    from realignkit.pipeline.evaluate import SplitEvaluator
    from realignkit.report.schemas import SplitMetrics

Materialize = Callable[[Candidate, SweepConfig, Path], None]


@dataclass
class SweepJob:
    config: SweepConfig
    splits: dict[str, list[SuiteItem]]
    out: Path  # the sweep's --out; its work dir is `RunDir(out).work`
    cache_dir: Path
    materialize_fn: Materialize
    # make_backend's options for every evaluation: backend, vllm, device (see SweepConfig.backend_options)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # A ready judge object for config.judge (shared by the demo's sweeps); None: built from config.judge. Only the
    # local executor uses it: Ray workers build their own from the config.
    judge: Any = None

    @property
    def run(self) -> RunDir:
        return RunDir(self.out)

    def evaluator(self) -> SplitEvaluator:
        from realignkit.pipeline.evaluate import SplitEvaluator

        config = self.config
        ready = self.judge is not None
        return SplitEvaluator(self.splits, cache_dir=self.cache_dir, aligned=config.aligned,
                              max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                              system_prompt=config.system_prompt, backend_options=self.backend_options,
                              judge=self.judge if ready else config.judge,
                              judge_options=None if ready else config.judge_options)


def candidate_row(candidate: Candidate, **fields: Any) -> CandidateState:
    return {"id": candidate.id, "method": candidate.method, "params": candidate.params, "label": candidate.label(),
            **fields}


def run_candidate(job: SweepJob, candidate: Candidate, evaluator: SplitEvaluator | None = None,
                  extra: dict[str, Any] | None = None) -> CandidateState:
    """Materialise -> generate -> judge one candidate on the selection split; its state is saved in the run dir
    (so a rerun skips it) and returned. `extra` keys (e.g. attempts) are recorded with it."""
    run, config = job.run, job.config
    started = time.time()
    model_dir = run.scratch / candidate.id
    shutil.rmtree(model_dir, ignore_errors=True)  # what a killed earlier attempt left half-written
    try:
        try:
            job.materialize_fn(candidate, config, model_dir)
        except BadInputError as exc:
            # One method that cannot apply to these checkpoints (e.g. no module matches its targets) must not
            # sink the other candidates: record why, and leave it out of the front and the pick.
            state = candidate_row(candidate, failed=str(exc), **(extra or {}))
            run.save_state(candidate.id, state)
            return state
        repaired = time.time()
        metrics = (evaluator or job.evaluator()).candidate(model_dir, "selection")
    finally:
        if not config.keep_candidates:
            shutil.rmtree(model_dir, ignore_errors=True)
    if config.keep_candidates:
        kept = run.work / "checkpoints" / candidate.id
        kept.parent.mkdir(exist_ok=True)
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(str(model_dir), kept)
    state = candidate_row(candidate, metrics=metrics, **(extra or {}),
                          seconds={"repair": round(repaired - started, 3), "evaluate": round(time.time() - repaired, 3)})
    run.save_state(candidate.id, state)
    return state


def evaluate_model(job: SweepJob, model: Path, split: str, evaluator: SplitEvaluator | None = None) -> SplitMetrics:
    return (evaluator or job.evaluator()).reference(model, split)


def build_winner(job: SweepJob, candidate: Candidate, evaluator: SplitEvaluator | None = None) -> SplitMetrics:
    """The winner's checkpoint in `<work>/winner` (kept from an earlier run when complete) and its test metrics."""
    run = job.run
    winner_dir = run.work / "winner"
    if not (winner_dir / "config.json").is_file():
        shutil.rmtree(winner_dir, ignore_errors=True)
        scratch = run.scratch / "winner"
        shutil.rmtree(scratch, ignore_errors=True)
        job.materialize_fn(candidate, job.config, scratch)
        shutil.move(str(scratch), winner_dir)
    return (evaluator or job.evaluator()).candidate(winner_dir, "test")
