"""realignkit.evaluation: suites, generation backends, judges, metrics and the audit (floor 2).

Public API (stable; the sweep and the lab use it):

- ``audit_model(model_path, suites, baseline=None, judge="refusal", limit=None, out_dir=None, *,
  options=AuditOptions(seed=0, settings=GenerationSettings(max_new_tokens=64, batch_size=16, system_prompt=None),
  judge_options=None, backend="transformers"|"openai"|"vllm", model=BackendOptions(aligned, template,
  allow_pickle, device, dtype, api_base, api_key_env, timeout, max_retries, vllm=VLLMOptions), baseline=None,
  cache_dir=None, use_cache=True, force=False, progress=True, report=True))
  -> dict`` (results.json content; with out_dir it also writes results.json, items.jsonl, report.html,
  realignkit.json atomically). ``suites`` are specs (file, folder, ``FORMAT:PATH``, ``organism:LABDIR``) or a
  list of ``SuiteItem``.
- In-memory models (no reload, cached generations), e.g. for a sweep::

      auditor = Auditor(load_suites(["organism:LAB"], limit=50), judge="refusal", cache_dir=DIR)
      base = auditor.run_model(aligned_model, tokenizer, name="aligned", fingerprint="aligned")
      run = auditor.run_model(candidate, tokenizer, name="interpolate a=0.5")  # keyed by its tensors' hash
      results = auditor.results(run, baseline=base)  # dict as in results.json
      results["overall"]["harmful_rate"], results["overall"]["utility_accuracy"], ...

- ``load_suites(specs, limit=None, seed=0) -> list[SuiteItem]`` (stratified by category per suite).
- ``make_judge(name, **options)`` / ``judge_verdicts(judge, responses, prompts)``; names: refusal, rubric,
  classifier (``classifier:PATH``).
- ``judged_items.evaluate_items(model, tokenizer, items, judge=None, ...)`` and ``judged_items.rate`` (the lab's
  simple loop).
- ``judge_file.judge_file(input, out, columns=Columns(prompt=, response=, label=), judge=)`` (`realignkit judge`).
- ``audit_loading.load_model_for_audit(path, aligned=, template=, allow_pickle=)`` -> (model, tokenizer): HF dir or PEFT
  adapter dir (merged into its base). The cache key of a model dir is ``realignkit.common.weights_fingerprint(path,
  base)`` (weights, configs and tokenizer by content, not by path: a copy of a model shares its cached answers).
- ``--backend vllm`` (``vllm_engine``): tensor parallelism, GPU memory share, context length (``VLLMOptions``);
  adapters served as LoRARequests; the same prompt token ids, stop rule and cache keys as transformers.
- Generation cache: SQLite at ``cache_dir/generations.sqlite`` (default ``$REALIGNKIT_CACHE_DIR`` or
  ``~/.cache/realignkit``), keyed by (model fingerprint, prompt, max_new_tokens, system_prompt, chat template).
- The restore-one-layer scan lives in ``realignkit.diagnose.scan`` (floor 3) and uses ``Auditor``.

results.json: the keys the report reads (model, baseline, judge, suites{kind, n, refusal_rate, harmful_rate,
harmfulness_score, accuracy, over_refusal_rate, ci95, by_category, flips}, items) plus ``overall``
(harmful_rate, over_refusal_rate, utility_accuracy, harmfulness_score, ci95), and with a baseline
``baseline_overall``, ``overall_delta``, per-suite ``baseline``/``delta`` and ``flipped_items``.
A suite file mixing kinds is reported as ``<suite>.<kind>`` groups (e.g. ``xstest.harmful``).
Degenerate answers (gibberish, repetition loops, empty; ``judges.degenerate``, offline and model-free) are flagged
per item (``degenerate``) before judging and count as neither refused nor harmful: every suite, category and
``overall`` gets ``degenerate_rate`` (over all n) and ``n_degenerate``, the refusal/harmful/over-refusal rates are
over the non-degenerate answers, utility accuracy counts them wrong; ``denominators`` in results.json says so.
"""

from realignkit.evaluation.audit import Auditor, AuditRun, audit_model, build_results, write_audit_outputs
from realignkit.evaluation.audit_options import AuditOptions, BackendOptions
from realignkit.evaluation.backends import GenerationSettings
from realignkit.evaluation.judges import Verdict, judge_verdicts, make_judge
from realignkit.evaluation.suite_files import load_suites
from realignkit.evaluation.suite_items import SuiteItem, stratified_sample

__all__ = [
    "AuditOptions",
    "AuditRun",
    "Auditor",
    "BackendOptions",
    "GenerationSettings",
    "SuiteItem",
    "Verdict",
    "audit_model",
    "build_results",
    "judge_verdicts",
    "load_suites",
    "make_judge",
    "stratified_sample",
    "write_audit_outputs",
]
