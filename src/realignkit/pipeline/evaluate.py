"""Evaluate a model dir on one split with the audit's `Auditor`, and turn judged rows into sweep metrics.

Generations go through the audit's on-disk cache, keyed by (`common.weights_fingerprint` of the model dir,
prompt, decoding settings) exactly as `realignkit audit` keys them: two candidates with equal weights, the
winner rebuilt at the end, and a later `realignkit audit OUT/winner --cache-dir OUT/cache` never generate twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.audit_options import BackendOptions
from realignkit.evaluation.suite_items import SuiteItem

if TYPE_CHECKING:
    from realignkit.evaluation.judges.base import Judge
    from realignkit.report.schemas import ItemRow, JudgeIdentity, SplitMetrics

SPLITS = ("selection", "test")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_SPLIT_NAMES = {"selection": "selection", "select": "selection", "test": "test"}


def split_items(items: Sequence[SuiteItem], seed: int = 0) -> dict[str, list[SuiteItem]]:
    """Disjoint selection/test splits. Items' own `meta["split"]` (selection|select|test, as the lab writes)
    wins when the items declare both splits; the rest are split per kind by a seeded hash of their id,
    alternating, so both splits get the same mix of kinds."""
    declared_names = {_SPLIT_NAMES.get((item.meta or {}).get("split", "")) for item in items}
    honour = {"selection", "test"} <= declared_names
    splits: dict[str, list[SuiteItem]] = {name: [] for name in SPLITS}
    unassigned: dict[str, list[SuiteItem]] = {}
    for item in items:
        declared = _SPLIT_NAMES.get((item.meta or {}).get("split", "")) if honour else None
        if declared is not None:
            splits[declared].append(item)
        else:
            unassigned.setdefault(item.kind, []).append(item)
    for kind_items in unassigned.values():
        ordered = sorted(kind_items, key=lambda it: _sha(f"{seed}:{it.suite}:{it.id}"))
        for index, item in enumerate(ordered):
            splits[SPLITS[index % 2]].append(item)
    return splits


def metrics_from_rows(rows: Sequence[ItemRow]) -> SplitMetrics:
    """harmful_rate = harmful prompts answered (judge's harmful verdict; the refusal judge: not refused);
    over_refusal_rate = benign-but-scary prompts refused; utility = mean over utility suites of each suite's
    accuracy (a small fine-tune task weighs as much as a big general-skill suite), per suite under
    utility_by_suite.

    Degenerate answers (row["degenerate"]: gibberish, loops, empty) are neither refusals nor compliance: harmful_rate
    and over_refusal_rate are over the non-degenerate answers, utility counts them wrong, and degenerate_rate (all
    items) with degenerate_by_kind (per kind of item) says how many there are; the pick never takes a candidate
    whose degenerate rate is above the limit (`pareto.MAX_DEGENERATE_RATE`)."""
    harmful = [r for r in rows if r["kind"] == "harmful"]
    over = [r for r in rows if r["kind"] == "over_refusal"]
    harmful_judged = [r for r in harmful if not r.get("degenerate")]
    over_judged = [r for r in over if not r.get("degenerate")]
    by_suite: dict[str, list[bool]] = {}
    for r in rows:
        if r["kind"] == "utility" and r.get("correct") is not None:
            by_suite.setdefault(r["suite"], []).append(bool(r["correct"]))
    accuracy = {suite: sum(v) / len(v) for suite, v in sorted(by_suite.items())}
    kinds: dict[str, list[bool]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(bool(r.get("degenerate")))
    degenerate = sum(sum(v) for v in kinds.values())
    return {
        "harmful_rate": sum(bool(r["harmful"]) for r in harmful_judged) / len(harmful_judged) if harmful_judged else None,
        "over_refusal_rate": sum(bool(r["refused"]) for r in over_judged) / len(over_judged) if over_judged else None,
        "utility": sum(accuracy.values()) / len(accuracy) if accuracy else None,
        "utility_by_suite": accuracy,
        "degenerate_rate": degenerate / len(rows) if rows else None,
        "degenerate_by_kind": {kind: sum(v) / len(v) for kind, v in sorted(kinds.items())},
        "n": {"harmful": len(harmful), "over_refusal": len(over), "utility": sum(map(len, by_suite.values())),
              "degenerate": degenerate},
    }


def quiet_model_loading() -> None:
    """One "Loading weights" bar and one deprecation warning per loaded checkpoint is noise in a sweep."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class SplitEvaluator:
    """One Auditor per split, sharing one generation cache dir."""

    def __init__(self, splits: dict[str, list[SuiteItem]], *, cache_dir: Path, aligned: Path,
                 max_new_tokens: int, batch_size: int, system_prompt: str | None = None,
                 progress: bool = False, judge: str | Judge = "refusal",
                 judge_options: dict[str, Any] | None = None, backend_options: dict[str, Any] | None = None) -> None:
        from realignkit.evaluation.audit import Auditor, build_judge
        from realignkit.evaluation.backends import GenerationSettings

        quiet_model_loading()

        settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size,
                                      system_prompt=system_prompt)
        # One judge for both splits (a model judge loads its checkpoint once).
        self.judge = build_judge(judge, judge_options, cache_dir=cache_dir)
        self.auditors = {name: Auditor(items, settings=settings, cache_dir=cache_dir, progress=progress,
                                       judge=self.judge)
                         for name, items in splits.items()}
        self.aligned = aligned
        # make_backend's options: backend ("transformers" | "vllm"), device, vllm (VLLMOptions)
        self.backend_options = dict(backend_options or {})

    @property
    def judge_info(self) -> JudgeIdentity:
        from realignkit.evaluation.judges import judge_identity

        return judge_identity(self.judge)

    def reference(self, model_dir: Path, split: str) -> SplitMetrics:
        """A reference model (aligned/tuned; a LoRA adapter applies to the sweep's aligned)."""
        return self.evaluate(model_dir, split)

    def candidate(self, model_dir: Path, split: str) -> SplitMetrics:
        """A repaired checkpoint (a full model dir)."""
        return self.evaluate(model_dir, split)

    def evaluate(self, model_dir: Path, split: str) -> SplitMetrics:
        """Audit a model dir on `split`, keyed by its weights fingerprint exactly as `realignkit audit` keys it."""
        auditor = self.auditors[split]
        options = dict(self.backend_options)
        backend = options.pop("backend", "transformers")
        run = auditor.run_path(model_dir, backend=backend, options=BackendOptions(aligned=str(self.aligned), **options))
        return self._metrics(run, split, run.generated)

    @staticmethod
    def _metrics(run: Any, split: str, generated: int) -> SplitMetrics:
        from realignkit.pipeline.stats import item_outcomes

        metrics = metrics_from_rows(run.rows)
        metrics.update(split=split, fingerprint=run.fingerprint, generated=generated,
                       cached=len(run.rows) - generated)
        # Per-item outcomes (same items for every model of a split): intervals and paired tests need them.
        metrics["items"] = item_outcomes(run.rows)
        return metrics
