"""`realignkit audit MODEL [--baseline MODEL] --suite ... [--judge NAME] [--limit N] --out DIR`."""

from __future__ import annotations

import argparse
import dataclasses

from realignkit.cli.judge_args import add_judge_arguments, judge_options_from_args
from realignkit.cli.options import add_vllm_arguments, vllm_flags_given, vllm_options_from_args
from realignkit.common.errors import BadInputError

EPILOG = """suites: a .jsonl (generic: prompt, kind, optional id/category/answer/meta), a HarmBench/AdvBench/XSTest
CSV, a HEx-PHI-format folder of per-category CSVs, a lab dir (organism suites), or FORMAT:PATH with FORMAT in
jsonl, harmbench, advbench, xstest, hex-phi, organism. API keys are read from the environment only."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="harm, over-refusal and utility of a model, by category, against a baseline",
        description="Audit a model: generate answers to safety/utility suites, judge them, write results.json, "
        "items.jsonl and report.html.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="model dir, hub id (org/name[@revision]), MODEL+LORA, PEFT "
                        "adapter dir, or endpoint model (--backend openai)")
    parser.add_argument("--baseline", metavar="MODEL", help="parent model to compare against (flips, deltas)")
    parser.add_argument("--suite", action="append", default=[], metavar="NAME_OR_FILE", help="repeatable")
    parser.add_argument("--limit", type=int, help="at most N items per suite, stratified by category")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sampling")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    model = parser.add_argument_group("model loading")
    model.add_argument("--backend", default="transformers", help="transformers (default), openai, vllm (adapters "
                       "are served through vLLM's LoRA support, not merged)")
    model.add_argument("--aligned", metavar="PATH", help="base model for a PEFT adapter MODEL")
    model.add_argument("--baseline-aligned", metavar="PATH", help="base model for a PEFT adapter baseline")
    model.add_argument("--template", metavar="FILE", help="Jinja chat template for models that lack one")
    model.add_argument("--allow-pickle", action="store_true", help="allow .bin/.pt pickle weights (unsafe)")
    model.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    model.add_argument("--dtype", help="auto (default), float32, float16, bfloat16")
    model.add_argument("--api-base", help="OpenAI-compatible base URL (default $OPENAI_BASE_URL)")
    model.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env variable holding the API key")
    generation = parser.add_argument_group("generation")
    generation.add_argument("--max-new-tokens", type=int, default=64)
    generation.add_argument("--batch-size", type=int, default=16)
    generation.add_argument("--system-prompt")
    generation.add_argument("--cache-dir", help="generation cache (default $REALIGNKIT_CACHE_DIR or ~/.cache/realignkit); "
                            "a sweep's OUT/cache reuses its answers for OUT/winner and the references")
    generation.add_argument("--no-cache", action="store_true")
    add_judge_arguments(parser.add_argument_group("judge"))
    add_vllm_arguments(parser)
    parser.set_defaults(func=_run)


def _resolve_models(args: argparse.Namespace) -> None:
    """Hub ids and MODEL+LORA to local dirs (in place); an endpoint model name (--backend openai) stays."""
    from realignkit.checkpoints.lora_merge import model_and_base

    if args.backend == "openai":
        return
    args.model, args.aligned = model_and_base(args.model, args.aligned, "MODEL", "--aligned")
    args.baseline, args.baseline_aligned = model_and_base(args.baseline, args.baseline_aligned, "--baseline",
                                                          "--baseline-aligned")


def _run(args: argparse.Namespace) -> int:
    from realignkit.evaluation import AuditOptions, BackendOptions, GenerationSettings, audit_model

    _resolve_models(args)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                  system_prompt=args.system_prompt)
    model = BackendOptions(aligned=args.aligned, template=args.template, allow_pickle=args.allow_pickle,
                           device=args.device, dtype=args.dtype)
    if args.backend == "openai":
        model = BackendOptions(api_base=args.api_base, api_key_env=args.api_key_env, timeout=args.timeout,
                               max_retries=args.max_retries)
    elif args.backend == "vllm":
        model = dataclasses.replace(model, vllm=vllm_options_from_args(args))
    elif vllm_flags_given(args):
        raise BadInputError("--tensor-parallel-size, --gpu-memory-utilization and --max-model-len need --backend vllm")
    options = AuditOptions(seed=args.seed, settings=settings, judge_options=judge_options_from_args(args),
                           backend=args.backend, model=model, baseline=model.with_base(args.baseline_aligned),
                           cache_dir=args.cache_dir, use_cache=not args.no_cache, force=args.force)
    results = audit_model(args.model, args.suite, baseline=args.baseline, judge=args.judge, limit=args.limit,
                          out_dir=args.out, options=options)
    _print_summary(results, args.out)
    return 0


def _print_summary(results: dict, out: str) -> None:
    def show(value: object) -> str:
        return "-" if value is None else f"{value:.3f}"

    overall, delta = results["overall"], results.get("overall_delta") or {}
    for key in ("harmful_rate", "over_refusal_rate", "utility_accuracy"):
        change = f" ({delta[key]:+.3f} vs baseline)" if delta.get(key) is not None else ""
        print(f"{key}: {show(overall.get(key))}{change}")
    print(f"wrote {out}/results.json, items.jsonl, report.html")
