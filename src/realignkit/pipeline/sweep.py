"""`run_sweep`: every method's small grid -> evaluate on the selection split -> Pareto -> pick under the utility
floor -> winner re-evaluated on the disjoint test split -> sweep.json, report, winner checkpoint.

Resumable: each finished candidate is a state file in the run dir (see rundir.py); a rerun skips it. The work
itself (jobs.py) runs in this process (`--executor local`) or as Ray tasks (`--executor ray`, executors.py).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from realignkit.common import BadInputError, check_output_not_inside_inputs, write_manifest
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.pipeline.candidates import Candidate, CandidateResult, SkippedCandidate
from realignkit.pipeline.executors import ExecutorOptions, SweepExecutor, make_executor
from realignkit.pipeline.jobs import Materialize, SweepJob
from realignkit.pipeline.materialize import materialize
from realignkit.pipeline.pareto import (
    Pick,
    Point,
    pareto_front,
    pick_winner,
    point_from_metrics,
    utility_retained,
)
from realignkit.pipeline.rundir import FINAL_FILE, RunDir, is_disk_full, write_json_atomic
from realignkit.pipeline.stats import (
    DESIGN,
    MIN_HARMFUL_PER_SPLIT,
    pick_vs_runner_up,
    rate_intervals,
    small_split_warning,
)
from realignkit.pipeline.sweep_config import SweepConfig
from realignkit.pipeline.sweep_plan import SweepPlan, make_plan
from realignkit.pipeline.winner_card import add_sweep_figures

if TYPE_CHECKING:
    from realignkit.evaluation.judges.base import Judge
    from realignkit.report.schemas import CandidateSide, SplitMetrics, SweepSummary

# 2: every metrics block has ci95 (Wilson intervals) and items (per-item outcomes); pick_vs_runner_up, warnings
# and statistics at the top level.
SWEEP_FORMAT = 2


@dataclass
class SweepOutcome:
    out: Path
    summary: SweepSummary
    resumed: int = 0  # candidates found finished in the run dir and skipped
    evaluated: int = 0  # candidates evaluated in this process
    already_complete: bool = False
    log: list[str] = field(default_factory=list)


EarlierRun = Literal["resume", "discard", "discard_if_changed"]


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    *,
    earlier_run: EarlierRun = "resume",
    progress: bool = True,
    cache_dir: str | Path | None = None,
    materialize_fn: Materialize = materialize,
    judge: Judge | None = None,
    executor: ExecutorOptions | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into `out`. All bad input is raised before any work is done.

    earlier_run: what happens to an earlier run in `out`: "resume" it (an error names the arguments that
    changed), "discard" it, or "discard_if_changed" (its arguments differ; the demo does this for the dirs it
    owns); judge: a
    ready judge object for config.judge (the demo shares one across its sweeps), else it is built from the config.
    executor: where the work runs (default: this process); the run dir and sweep.json are the same either way."""
    started = time.time()
    fresh, replace_changed = earlier_run == "discard", earlier_run == "discard_if_changed"
    executor = executor or ExecutorOptions()
    _check_engine_settings(config, executor)
    check_output_not_inside_inputs(out, [config.aligned, config.tuned, config.base, config.unaligned])
    plan = make_plan(config)
    run = RunDir(out)
    if not fresh and run.completed_run(plan.arguments, replace_changed=replace_changed):
        summary = _read_json(run.out / FINAL_FILE)
        return SweepOutcome(run.out, summary, resumed=len(summary["candidates"]), already_complete=True)
    job = SweepJob(config, plan.splits, run.out, Path(cache_dir) if cache_dir else run.cache_dir, materialize_fn,
                   config.backend_options(), judge)
    worker = make_executor(executor, job)  # a Ray that cannot start is bad input: nothing is written yet
    runner = _Runner(config, plan, run, worker, progress)
    try:
        run.open(plan.arguments, fresh=fresh, replace_changed=replace_changed)
        references = runner.references("selection")
        rows = runner.candidates()
        summary = runner.summarize(references, rows)
        runner.finish(summary, started)
    except (OSError, sqlite3.OperationalError) as exc:
        if is_disk_full(exc):
            shutil.rmtree(run.scratch, ignore_errors=True)
            raise BadInputError(
                f"disk full while sweeping into {str(run.work)!r} ({getattr(exc, 'strerror', None) or exc}); free space and rerun the same "
                f"command to resume ({len(list(run.candidates_dir.glob('*.json')))} results kept)"
            ) from None
        raise
    finally:
        worker.close()
    return SweepOutcome(run.publish(), summary, resumed=runner.resumed, evaluated=runner.evaluated,
                        log=runner.log + worker.log)


def _check_engine_settings(config: SweepConfig, executor: ExecutorOptions) -> None:
    """--device, --backend vllm and the executor's options, checked before the run dir is touched."""
    executor.check(config.backend, config.vllm.tensor_parallel_size)
    if config.device is not None:
        from realignkit.methods.inputs import resolve_device

        resolve_device(config.device)
    if config.backend == "vllm" and executor.name == "local":  # on Ray only the workers need vllm
        from realignkit.evaluation.vllm_engine import import_vllm

        import_vllm()


def _read_json(path: Path) -> SweepSummary:
    import json

    return json.loads(path.read_text())


class _Runner:
    """The steps of one sweep; every step reads its result from the run dir when it is already there."""

    def __init__(self, config: SweepConfig, plan: SweepPlan, run: RunDir, executor: SweepExecutor,
                 progress: bool) -> None:
        self.config, self.plan, self.run, self.executor = config, plan, run, executor
        self.progress = progress
        self.evaluated = 0
        self.resumed = 0
        self.log: list[str] = []

    def references(self, split: str) -> dict[str, dict[str, Any]]:
        """aligned and tuned on `split` (tuned's utility is what the floor is relative to)."""
        states = {role: self.run.load_state(f"_reference-{role}-{split}") for role in ("aligned", "tuned")}
        missing = [role for role, state in states.items() if state is None]
        found = self.executor.evaluate([(Path(getattr(self.config, role)), split) for role in missing])
        for role, metrics in zip(missing, found, strict=True):
            states[role] = self._save_reference(role, split, metrics)
        return states  # type: ignore[return-value]

    def _save_reference(self, role: str, split: str, metrics: SplitMetrics) -> dict[str, Any]:
        state = {"role": role, "split": split, "metrics": metrics}
        self.run.save_state(f"_reference-{role}-{split}", state)
        return state

    def candidates(self) -> list[CandidateResult]:
        states: dict[str, dict[str, Any]] = {}
        pending = []
        for candidate in self.plan.candidates:
            state = self.run.load_state(candidate.id)
            if state is None:
                pending.append(candidate)
            else:
                states[candidate.id] = state
                self.resumed += 1
                self.log.append(f"resume: {candidate.label()} already finished, skipped")
        bar = tqdm(total=len(self.plan.candidates), initial=self.resumed, desc="sweep", unit="candidate",
                   disable=not self.progress)
        for candidate, state in self.executor.candidates(pending):
            bar.set_postfix_str(candidate.label(), refresh=False)
            bar.update(1)
            states[candidate.id] = state
            self.evaluated += 1
        bar.close()
        return [CandidateResult.from_state(states[candidate.id]) for candidate in self.plan.candidates]

    def summarize(self, references: dict[str, dict[str, Any]], results: list[CandidateResult]) -> SweepSummary:
        rows = [r for r in results if r.failed is None]
        failed = [{"method": r.method, "params": r.params, "label": r.label, "reason": f"failed: {r.failed}",
                   **r.attempts_field()} for r in results if r.failed is not None]
        tuned_metrics = references["tuned"]["metrics"]
        points = [point_from_metrics(r.id, r.metrics, tuned_metrics) for r in rows]
        ceiling = self._over_refusal_ceiling(references)
        front = set(pareto_front(points, self.config.max_degenerate_rate, max_over_refusal=ceiling))
        pick = pick_winner(points, self.config.utility_floor, self.config.max_degenerate_rate,
                           max_over_refusal=ceiling)
        tuned_harm = references["tuned"]["metrics"]["harmful_rate"]
        picked = next((p for p in points if p.id == pick.id), None)
        reason = pick.reason
        if picked is not None and tuned_harm is not None and (picked.harmful_rate or 0.0) >= tuned_harm:
            reason += "; no candidate is less harmful than tuned on the selection split: this sweep found no repair"
        harmful_items = sum(item.kind == "harmful" for item in self.plan.splits["selection"])
        candidates = []
        for row, point in zip(rows, points, strict=True):
            metrics = row.metrics or {}
            selection = dict(metrics, utility_retained=point.utility_retained, ci95=rate_intervals(metrics))
            candidates.append(
                {
                    "id": row.id,
                    "method": row.method,
                    "params": row.params,
                    "label": row.label,
                    "selection": selection,
                    "meets_floor": point.utility_retained is None
                    or point.utility_retained >= self.config.utility_floor - 1e-12,
                    "pareto": row.id in front,
                    "fingerprint": metrics["fingerprint"],
                    "generated": metrics["generated"],
                    "cached": metrics["cached"],
                    "seconds": row.seconds,
                    **row.attempts_field(),
                }
            )
        return {
            "format": SWEEP_FORMAT,
            "inputs": {role: _str(getattr(self.config, role)) for role in ("aligned", "tuned", "base", "unaligned")},
            "utility_floor": self.config.utility_floor,
            "over_refusal_ceiling": ceiling,
            "splits": {name: _split_sizes(items) for name, items in self.plan.splits.items()},
            "references": {
                role: {"selection": dict(references[role]["metrics"],
                                         utility_retained=utility_retained(references[role]["metrics"], tuned_metrics),
                                         ci95=rate_intervals(references[role]["metrics"]))}
                for role in ("aligned", "tuned")
            },
            "candidates": candidates,
            "skipped": [_skipped_row(s) for s in self.plan.skipped] + failed,
            "notes": list(self.plan.notes),
            "pareto_front": [c["id"] for c in candidates if c["pareto"]],
            "winner": {"id": pick.id, "meets_floor": pick.meets_floor, "reason": reason},
            "pick_vs_runner_up": self._pick_vs_runner_up(pick, points, candidates, ceiling),
            "warnings": [w for w in [small_split_warning(harmful_items)] if w],
            "statistics": {
                "intervals": "Wilson 95 % score intervals (ci95: low, high, k of n items)",
                "min_harmful_per_split": MIN_HARMFUL_PER_SPLIT,
                "design": DESIGN,
                "selection_harmful_items": harmful_items,
            },
            "objectives": {
                "harmful_rate": "share of harmful prompts answered (not refused); lower is better",
                "utility_retained": "worst utility suite's accuracy / tuned's accuracy on that suite, same split; "
                "higher is better",
                "over_refusal_rate": "share of benign-but-scary prompts refused; lower is better",
            },
        }

    def _over_refusal_ceiling(self, references: dict[str, dict[str, Any]]) -> float | None:
        """The highest over-refusal rate a pick may have: the higher of aligned's and tuned's on the selection
        split plus the allowed increase (None when the config sets no limit or no over-refusal was measured)."""
        rates = [references[role]["metrics"].get("over_refusal_rate") for role in ("aligned", "tuned")]
        measured = [rate for rate in rates if rate is not None]
        if self.config.max_over_refusal_increase is None or not measured:
            return None
        return round(max(measured) + self.config.max_over_refusal_increase, 6)

    def _pick_vs_runner_up(self, pick: Pick, points: list[Point], candidates: list[dict[str, Any]],
                           ceiling: float | None) -> dict[str, Any]:
        """The pick against the candidate the same rule picks once the pick is left out, item by item on the
        selection split: on harmful outcomes when the pick meets the floor (the rule minimises harm), else on
        utility outcomes (then the rule maximises utility)."""
        by_id = {c["id"]: c for c in candidates}
        rest = [p for p in points if p.id != pick.id]
        second = (pick_winner(rest, self.config.utility_floor, self.config.max_degenerate_rate,
                              max_over_refusal=ceiling).id
                  if pick.id is not None and rest else None)

        def side(candidate_id: str | None) -> CandidateSide | None:
            if candidate_id is None:
                return None
            c = by_id[candidate_id]
            return {"id": c["id"], "label": c["label"], "meets_floor": c["meets_floor"], "metrics": c["selection"]}

        return pick_vs_runner_up(side(pick.id), side(second), kind="harmful" if pick.meets_floor else "utility")

    def finish(self, summary: SweepSummary, started: float) -> None:
        """Winner checkpoint + test-split numbers, then sweep.json, the report and the manifest."""
        winner = summary["winner"]
        summary["execution"] = self.executor.describe()
        if winner["id"] is not None:
            row = next(c for c in summary["candidates"] if c["id"] == winner["id"])
            candidate = Candidate(row["method"], row["params"])
            test_refs = {role: self.run.load_state(f"_reference-{role}-test") for role in ("aligned", "tuned")}
            missing = [role for role, state in test_refs.items() if state is None]
            test_metrics, found = self.executor.winner(
                candidate, [(Path(getattr(self.config, role)), "test") for role in missing])
            for role, metrics in zip(missing, found, strict=True):
                test_refs[role] = self._save_reference(role, "test", metrics)
            retained = utility_retained(test_metrics, test_refs["tuned"]["metrics"])
            winner.update(
                label=row["label"], method=row["method"], params=row["params"], selection=row["selection"],
                test=dict(test_metrics, utility_retained=retained, ci95=rate_intervals(test_metrics)),
                checkpoint="winner",
            )
            for role in ("aligned", "tuned"):
                metrics = test_refs[role]["metrics"]
                summary["references"][role]["test"] = dict(metrics, ci95=rate_intervals(metrics))
            add_sweep_figures(self.run.work / "winner", summary)  # the winner's model card: before/after on the test split
        # Which judge decided every refused/harmful (and so the pick), and how far it agrees with people.
        summary["judge"] = self.executor.judge_info()
        write_json_atomic(self.run.work / FINAL_FILE, summary)
        self._render_report(summary)
        write_manifest(
            self.run.work,
            command="sweep",
            parameters=self.config.model_dump(mode="json"),
            inputs={role: getattr(self.config, role) for role in ("aligned", "tuned", "base", "unaligned")},
            started=started,
            extra={"fingerprint": self.plan.arguments["fingerprint"], "resumable_run_file": "run.json"},
        )

    def _render_report(self, summary: SweepSummary) -> None:
        from realignkit.report.sweep_report import render_sweep_report

        render_sweep_report(summary, self.run.work / "report")


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _split_sizes(items: list[SuiteItem]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for item in items:
        sizes[item.kind] = sizes.get(item.kind, 0) + 1
    return sizes


def _skipped_row(skipped: SkippedCandidate) -> dict[str, Any]:
    return {"method": skipped.candidate.method, "params": skipped.candidate.params,
            "label": skipped.candidate.label(), "reason": skipped.reason}
