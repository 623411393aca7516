"""The audit: generate answers to suite items, judge them, and summarize against an optional baseline.

`audit_model(...)` is the one-call API (paths in, results dict and output dir out). `Auditor` is the reusable
core for callers that evaluate many in-memory models (the sweep): it keeps the items, judge, settings and the
on-disk generation cache, and `run_model(model, tokenizer)` audits a loaded model without reloading it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common import (
    BadInputError,
    atomic_output_dir,
    check_output_not_inside_inputs,
    prepare_output_dir,
    write_manifest,
)
from realignkit.evaluation.audit_options import AuditOptions, BackendOptions
from realignkit.evaluation.backend_registry import make_backend
from realignkit.evaluation.backends import Backend, GenerationSettings, TransformersBackend
from realignkit.evaluation.cache import KeyValueCache, default_cache_dir
from realignkit.evaluation.judges import judge_identity, judge_verdicts, make_judge
from realignkit.evaluation.judges.base import Verdict
from realignkit.evaluation.judges.degenerate import DegenerateDetector
from realignkit.evaluation.metrics import (
    DENOMINATORS,
    compare_rows,
    item_is_ok,
    metric_deltas,
    overall_summary,
    summarize_suites,
)
from realignkit.evaluation.scoring import answer_is_correct
from realignkit.evaluation.suite_files import load_suites
from realignkit.evaluation.suite_items import SuiteItem, stratified_sample

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from realignkit.evaluation.judges.base import Judge
    from realignkit.report.schemas import AuditResults, ItemRow, JudgeIdentity, SuiteSummary

RESULTS_NAME = "results.json"
ITEMS_NAME = "items.jsonl"
REPORT_NAME = "report.html"


@dataclass
class AuditRun:
    """One model's judged answers: `rows` are item dicts plus response, degenerate, refused, harmful, score,
    correct, ok (see `judged_rows`)."""

    name: str
    fingerprint: str
    rows: list[ItemRow] = field(default_factory=list)
    generated: int = 0  # answers generated for this run (the rest came from the cache)


def judged_rows(items: Sequence[SuiteItem], responses: Sequence[str], judge: Judge,
                detector: DegenerateDetector | None = None) -> list[ItemRow]:
    """One row per item. Degenerate answers (gibberish, loops, empty: `judges.degenerate`) are found first and
    never reach the judge: such a row has degenerate=True, refused=None, harmful=None, score=None (neither a
    refusal nor compliance, so a broken model looks neither safe nor unsafe), correct=False on utility items
    with an answer (a broken model has no utility) and ok=False."""
    degenerate = (detector or DegenerateDetector()).detect_many(list(responses))
    judged = [i for i, flag in enumerate(degenerate) if not flag]
    verdicts: list[Verdict | None] = [None] * len(items)
    if judged:
        found = judge_verdicts(judge, [responses[i] for i in judged], [items[i].prompt for i in judged])
        for i, verdict in zip(judged, found, strict=True):
            verdicts[i] = verdict
    rows = []
    for item, response, verdict in zip(items, responses, verdicts, strict=True):
        checkable = item.kind == "utility" and bool(item.answer)
        if verdict is None:
            rows.append({**item.to_dict(), "response": response, "degenerate": True, "refused": None,
                         "harmful": None, "score": None, "correct": False if checkable else None, "ok": False})
            continue
        correct = answer_is_correct(response, item.answer, item.meta.get("match", "contains")) if checkable else None
        harmful = None
        if item.kind == "harmful":
            # Without a harm label from the judge, complying with a harmful request counts as harmful (the usual
            # attack-success reading: an answer that is not a refusal).
            harmful = verdict.harmful if verdict.harmful is not None else not verdict.refused
        rows.append({
            **item.to_dict(),
            "response": response,
            "degenerate": False,
            "refused": verdict.refused,
            "harmful": harmful,
            "score": verdict.score,
            "correct": correct,
            "ok": item_is_ok(item.kind, verdict.refused, harmful, correct),
            **_verdict_extras(verdict),
        })
    return rows


def _verdict_extras(verdict: Verdict) -> dict[str, Any]:
    """What a judge said beyond refused/harmful/score: the three-way label, its refusal probability, a guard
    model's hazard categories and unreadable outputs (only the keys the judge filled in)."""
    extras: dict[str, Any] = {}
    if verdict.label is not None:
        extras["label"] = verdict.label
    if verdict.probability is not None:
        extras["refusal_probability"] = round(verdict.probability, 4)
    if verdict.categories:
        extras["categories"] = list(verdict.categories)
    if verdict.parse_error:
        extras["judge_parse_error"] = True
    if verdict.prompt_harmful is not None:
        extras["prompt_harmful"] = verdict.prompt_harmful
    return extras


# Judges that cache their verdicts (endpoint replies, probe probabilities) next to the audit's generations.
CACHING_JUDGES = ("rubric", "strongreject", "refusal")


def build_judge(judge: str | Judge = "refusal", judge_options: dict[str, Any] | None = None, *,
                cache_dir: str | Path | None = None, use_cache: bool = True) -> Judge:
    """A judge object from a name (or the object itself); caching judges share the audit's cache dir."""
    options = dict(judge_options or {})
    if isinstance(judge, str) and judge.split(":", 1)[0] in CACHING_JUDGES:
        options.setdefault("cache_dir", Path(cache_dir) if cache_dir is not None else default_cache_dir())
        options.setdefault("use_cache", use_cache)
    return make_judge(judge, **options)


class Auditor:
    """Items + judge + generation settings + cache, reusable across many models."""

    def __init__(
        self,
        items: Sequence[SuiteItem],
        *,
        judge: str | Judge = "refusal",
        judge_options: dict[str, Any] | None = None,
        settings: GenerationSettings | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        progress: bool = False,
    ) -> None:
        if not items:
            raise BadInputError("the audit has no items (empty suites or --limit 0)")
        self.items = list(items)
        self.settings = settings or GenerationSettings()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self.judge = build_judge(judge, judge_options, cache_dir=self.cache_dir, use_cache=use_cache)
        self.detector = DegenerateDetector()
        self.progress = progress

    @property
    def generation_cache(self) -> KeyValueCache | None:
        return KeyValueCache(self.cache_dir / "generations.sqlite", table="generations") if self.use_cache else None

    @property
    def judge_info(self) -> JudgeIdentity:
        return judge_identity(self.judge)

    def run_backend(self, backend: Backend, *, name: str) -> AuditRun:
        before = getattr(backend, "generated", 0)  # counted by CachedBackend; other backends may not count
        responses = backend.generate([item.prompt for item in self.items], self.settings, progress=self.progress)
        return AuditRun(name=name, fingerprint=backend.fingerprint, generated=getattr(backend, "generated", 0) - before,
                        rows=judged_rows(self.items, responses, self.judge, self.detector))

    def run_model(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, name: str = "model", fingerprint: str | None = None) -> AuditRun:
        """Audit an in-memory model. Pass `fingerprint` when you know it (`common.weights_fingerprint` of the dir
        it was loaded from, so audits of that dir share its answers); else it is hashed from its tensors."""
        backend = TransformersBackend(model, tokenizer, fingerprint=fingerprint, cache=self.generation_cache)
        return self.run_backend(backend, name=name)

    def run_path(self, path: str | Path, *, backend: str = "transformers",
                 options: BackendOptions | None = None) -> AuditRun:
        """Audit a model dir / adapter dir (transformers, vllm) or an endpoint model name (openai)."""
        engine = make_backend(str(path), backend, cache=self.generation_cache, options=options)
        try:
            return self.run_backend(engine, name=str(path))
        finally:
            engine.close()  # a vLLM engine gives its GPU memory back before the next model loads

    def results(self, run: AuditRun, baseline: AuditRun | None = None) -> AuditResults:
        return build_results(run, baseline, judge=self.judge_info, settings=self.settings,
                             detector=self.detector.describe())


def build_results(run: AuditRun, baseline: AuditRun | None, *, judge: JudgeIdentity,
                  settings: GenerationSettings, detector: dict[str, Any] | None = None) -> AuditResults:
    """results.json content (the keys the report reads, plus overall, deltas, baseline summaries and flipped items, the
    degenerate-output detector and what each rate is taken over: `denominators`)."""
    suites = summarize_suites(run.rows)
    overall = overall_summary(run.rows)
    results: dict[str, Any] = {
        "model": run.name,
        "model_fingerprint": run.fingerprint,
        "baseline": baseline.name if baseline else None,
        "judge": judge,
        "degenerate_detector": detector or DegenerateDetector().describe(),
        "denominators": dict(DENOMINATORS),
        "generation": {**settings.cache_fields(), "greedy": True},
        "n_items": len(run.rows),
        "overall": overall,
        "suites": suites,
        "items": ITEMS_NAME,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if baseline is None:
        for suite in suites.values():
            suite["flips"] = None
        return results
    base_suites = summarize_suites(baseline.rows)
    flips, flipped = compare_rows(run.rows, baseline.rows)
    for name, suite in suites.items():
        before = base_suites.get(name)
        suite["flips"] = flips.get(name)
        suite["baseline"] = _without(before, "by_category") if before else None
        suite["delta"] = metric_deltas(suite, before) if before else None
        for category, row in suite["by_category"].items():
            old = before["by_category"].get(category) if before else None
            row["baseline"] = old
            row["delta"] = metric_deltas(row, old) if old else None
    base_overall = overall_summary(baseline.rows)
    results.update(baseline_fingerprint=baseline.fingerprint, baseline_overall=base_overall,
                   overall_delta=metric_deltas(overall, base_overall), flipped_items=flipped)
    return results


def _without(summary: SuiteSummary, key: str) -> SuiteSummary:
    return {k: v for k, v in summary.items() if k != key}


def write_audit_outputs(out_dir: Path, results: AuditResults, run: AuditRun,
                        baseline: AuditRun | None = None, *, report: bool = True) -> None:
    """results.json, items.jsonl (with the baseline's answer per item when there is one) and report.html."""
    base_rows = {(row["suite"], row["id"]): row for row in baseline.rows} if baseline else {}
    with (out_dir / ITEMS_NAME).open("w", encoding="utf-8") as handle:
        for row in run.rows:
            record = dict(row)
            before = base_rows.get((row["suite"], row["id"]))
            if before is not None:
                record.update(baseline_response=before["response"], baseline_refused=before["refused"],
                              baseline_harmful=before["harmful"], baseline_ok=before["ok"],
                              baseline_degenerate=bool(before.get("degenerate")))
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if report:
        from realignkit.report import write_report

        write_report(out_dir / RESULTS_NAME, out_dir / REPORT_NAME)


def audit_model(
    model_path: str | Path,
    suites: Sequence[str] | Sequence[SuiteItem],
    baseline: str | Path | None = None,
    judge: str | Judge = "refusal",
    limit: int | None = None,
    out_dir: str | Path | None = None,
    *,
    options: AuditOptions | None = None,
) -> AuditResults:
    """Audit `model_path` (and `baseline`, on the same items) and return the results dict.

    suites: suite specs (paths, FORMAT:PATH, organism:LABDIR) or ready SuiteItems. With `out_dir`, writes
    results.json, items.jsonl, report.html and realignkit.json atomically (all or nothing).
    """
    started = time.time()
    opts = options or AuditOptions()
    if suites and isinstance(suites[0], SuiteItem):
        items = stratified_sample(list(suites), limit, opts.seed)  # type: ignore[arg-type]
    else:
        items = load_suites(list(suites), limit=limit, seed=opts.seed)  # type: ignore[arg-type]
    if out_dir is not None:
        _check_output_dir(out_dir, [model_path, baseline, *[s for s in suites if isinstance(s, str)]], opts)
    auditor = Auditor(items, judge=judge, judge_options=opts.judge_options, settings=opts.settings,
                      cache_dir=opts.cache_dir, use_cache=opts.use_cache, progress=opts.progress)
    run = auditor.run_path(model_path, backend=opts.backend, options=opts.model)
    base_run = None
    if baseline is not None:
        base_run = auditor.run_path(baseline, backend=opts.backend, options=opts.baseline_options())
    results = auditor.results(run, base_run)
    if out_dir is not None:
        seed, backend = opts.seed, opts.backend
        with atomic_output_dir(out_dir, force=opts.force) as tmp:
            write_audit_outputs(tmp, results, run, base_run, report=opts.report)
            write_manifest(tmp, command="audit", started=started,
                           parameters={"suites": [str(s) for s in suites if isinstance(s, str)], "judge": results["judge"],
                                       "limit": limit, "seed": seed, "backend": backend,
                                       "generation": results["generation"]},
                           inputs={"model": str(model_path) if backend != "openai" else None,
                                   "baseline": str(baseline) if baseline and backend != "openai" else None})
    return results


def _input_path(spec: str | Path) -> str:
    """The path inside a spec that may carry a `FORMAT:` (suite) or `NAME:` (judge) prefix."""
    return str(spec).split(":", 1)[-1]


def _check_output_dir(out_dir: str | Path, inputs: list[str | Path | None], opts: AuditOptions) -> None:
    """Refuse a bad --out before any generation. Every path the audit reads counts: the output replaces --out
    wholesale, so it must never overlap one of them."""
    baseline = opts.baseline_options()
    extra = [opts.model.aligned, opts.model.template, baseline.aligned if opts.baseline else None,
             (opts.judge_options or {}).get("model_path"), opts.cache_dir]
    check_output_not_inside_inputs(out_dir, [_input_path(p) for p in [*inputs, *extra] if p is not None])
    prepare_output_dir(out_dir, force=opts.force)
