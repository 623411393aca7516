"""`realignkit sweep`: try every repair method's small grid, show the Pareto front, pick under a utility floor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.cli.judge_args import add_judge_arguments, judge_options_from_args
from realignkit.cli.options import add_vllm_arguments, vllm_flags_given
from realignkit.common.config import validation_problems
from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import is_adapter_dir

if TYPE_CHECKING:
    from realignkit.pipeline.executor_options import ExecutorOptions

EPILOG = """examples:
  realignkit sweep --aligned lab/aligned --tuned lab/harmful-mix-0.1-full --base lab/base --out sweeps/hm01
  realignkit sweep --config recipe.yaml --out sweeps/hm01 --methods interpolate,dare --utility-floor 0.95
  realignkit sweep --config recipe.yaml --out /shared/sweeps/hm01 --executor ray --ray-address auto \\
      --gpus-per-candidate 1 --backend vllm

The run dir resumes: rerun the same command after a kill and finished candidates are skipped (on either
executor). With --executor ray every candidate is one Ray task; --out and the inputs must be on storage every
node sees. A candidate whose worker dies is retried once, then recorded as failed. See docs/scaling.md.
Recipe keys (YAML): aligned, tuned, base, unaligned, methods, grids {method: {param: [values]}}, utility_floor, max_degenerate_rate,
max_over_refusal_increase, suites, calibration {antidote: FILE, somf: FILE}, limit, max_new_tokens, batch_size, system_prompt, seed,
keep_candidates, judge, judge_options, backend, vllm {tensor_parallel_size, gpu_memory_utilization, max_model_len},
device."""



NO_LIMIT = object()  # `--max-over-refusal-increase none`


def _rate_or_none(text: str) -> float | object:
    """A rate in 0..1, or NO_LIMIT for 'none'/'off' (argparse turns a ValueError into its one-line usage error)."""
    if text.strip().lower() in ("none", "off"):
        return NO_LIMIT
    return float(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="sweep repair methods, show the Pareto front, pick the best under a utility floor",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--aligned", help="safety-aligned parent model dir")
    parser.add_argument("--tuned", help="the fine-tune: a model dir or a PEFT LoRA adapter dir")
    parser.add_argument("--base", help="pre-alignment model dir (the default `unaligned` for resta/safe_lora)")
    parser.add_argument("--unaligned", help="model whose difference from aligned is the safety (default: --base)")
    parser.add_argument("--methods", help="comma-separated methods (default: all that the inputs allow)")
    parser.add_argument("--grid", action="append", default=[], metavar="METHOD.PARAM=V1,V2",
                        help="override one parameter's grid, e.g. interpolate.alpha=0.2,0.4 (repeatable)")
    parser.add_argument("--utility-floor", type=float, help="keep utility >= FLOOR x tuned's (0 < FLOOR <= 1; 0.9)")
    parser.add_argument("--max-degenerate-rate", type=float,
                        help="never pick a candidate with more degenerate (gibberish/looping/empty) answers than "
                             "this share of a suite kind (0..1; 0.2)")
    parser.add_argument("--max-over-refusal-increase", type=_rate_or_none, metavar="RATE",
                        help="never pick a candidate refusing more benign-but-scary prompts than the higher of "
                             "aligned's and tuned's rate + RATE (0..1, or 'none' for no limit; 0.1)")
    parser.add_argument("--suite", action="append", default=[], help="suite file/dir or FORMAT:PATH (repeatable; "
                        "default: the lab's suites when --aligned is in a lab dir)")
    parser.add_argument("--calibration", action="append", default=[], metavar="METHOD=FILE",
                        help="calibration data for antidote / somf, e.g. antidote=lab/calibration/antidote.jsonl")
    parser.add_argument("--limit", type=int, help="at most N items per suite (default: all; the selection split "
                        "wants >= 156 harmful items to tell 5%% from 15%% harmful, see pipeline/stats.py)")
    parser.add_argument("--max-new-tokens", type=int, help="generation length (default 48)")
    parser.add_argument("--seed", type=int, help="seed for splitting and sampling (default 0)")
    parser.add_argument("--system-prompt", help="system prompt for every generation (e.g. an identity-shift persona)")
    parser.add_argument("--keep-candidates", action="store_true", default=None,
                        help="keep every candidate checkpoint (default: only the winner)")
    add_judge_arguments(parser.add_argument_group("judge (decides refused/harmful, and so the pick)"), default=None)
    parser.add_argument("--config", help="YAML recipe; command-line flags override its keys")
    engine = parser.add_argument_group("engines (how, not what: none of these changes the run's identity)")
    engine.add_argument("--backend", choices=["transformers", "vllm"],
                        help="generation engine (default transformers; vllm keeps the same cache keys)")
    engine.add_argument("--device", help="merge math and transformers generation: cpu, cuda, cuda:N, auto "
                        "(default: merge on cpu, generate on a GPU when there is one)")
    engine.add_argument("--cache-dir", help="generation cache (default: OUT/cache). Answers are keyed by weights and "
                        "prompt, so a sweep with a wider grid given an earlier sweep's cache regenerates only "
                        "the new candidates")
    add_vllm_arguments(parser)
    ray = parser.add_argument_group("executor (pip install 'realignkit[ray]' for ray)")
    ray.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local (default): one candidate after another here; ray: one Ray task per candidate")
    ray.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster (e.g. auto, ray://host:10001); "
                     "default: start a local Ray instance for this command and stop it after")
    ray.add_argument("--ray-num-cpus", type=int, metavar="N", help="CPUs of that local instance (default: all)")
    ray.add_argument("--cpus-per-candidate", type=float, metavar="N", help="CPUs each task reserves (default 1)")
    ray.add_argument("--gpus-per-candidate", type=float, metavar="N",
                     help="GPUs each task reserves (default 0; >= --tensor-parallel-size with --backend vllm)")
    ray.add_argument("--memory-per-candidate", metavar="SIZE", help="memory each task reserves, e.g. 64GiB")
    parser.add_argument("--fresh", action="store_true", help="discard a previous or unfinished run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="upload the winner checkpoint (with its model card) to this Hugging Face Hub model repo "
                        "(token from HF_TOKEN; HF_ENDPOINT for another hub)")
    parser.add_argument("--out", required=True, help="run directory (resumable)")
    parser.set_defaults(func=_run)


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise BadInputError(f"{flag} {value!r}: expected KEY=VALUE")
        pairs.append((key.strip(), rest.strip()))
    return pairs


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Recipe (if any) overlaid with the flags that were given."""
    from realignkit.pipeline.sweep_config import load_recipe

    settings: dict[str, Any] = load_recipe(args.config) if args.config else {}
    simple = {"aligned": args.aligned, "tuned": args.tuned, "base": args.base, "unaligned": args.unaligned,
              "utility_floor": args.utility_floor, "max_degenerate_rate": args.max_degenerate_rate,
              "limit": args.limit, "max_new_tokens": args.max_new_tokens,
              "seed": args.seed, "keep_candidates": args.keep_candidates, "system_prompt": args.system_prompt,
              "backend": args.backend, "device": args.device}
    settings.update({k: v for k, v in simple.items() if v is not None})
    if args.max_over_refusal_increase is not None:  # 'none' arrives as the NO_LIMIT marker
        settings["max_over_refusal_increase"] = (None if args.max_over_refusal_increase is NO_LIMIT
                                                 else args.max_over_refusal_increase)
    vllm_flags = {key: getattr(args, key) for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")}
    if any(value is not None for value in vllm_flags.values()):
        recipe_vllm = settings.get("vllm") if isinstance(settings.get("vllm"), dict) else {}
        settings["vllm"] = {**recipe_vllm, **{k: v for k, v in vllm_flags.items() if v is not None}}
    if args.judge is not None:
        settings["judge"] = args.judge
    judge_args = argparse.Namespace(**{**vars(args), "judge": settings.get("judge", "refusal"),
                                       "backend": settings.get("backend")})
    judge_options = {k: v for k, v in judge_options_from_args(judge_args).items() if v is not None}
    if judge_options:
        settings["judge_options"] = dict(settings.get("judge_options") or {}, **judge_options)
    if args.methods is not None:
        settings["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.suite:
        settings["suites"] = args.suite
    if args.calibration:
        settings["calibration"] = dict(settings.get("calibration") or {}, **dict(_pairs(args.calibration, "--calibration")))
    for key, values in _pairs(args.grid, "--grid"):
        method, dot, param = key.partition(".")
        if not dot or not param:
            raise BadInputError(f"--grid {key!r}: expected METHOD.PARAM=V1,V2")
        grids = settings.setdefault("grids", {})
        grids.setdefault(method, {})[param] = [_parse_value(v) for v in values.split(",")]
    for role in ("aligned", "tuned"):
        if not settings.get(role):
            raise BadInputError(f"--{role} is required (or give it in --config)")
    return settings


def executor_options_from_args(args: argparse.Namespace) -> ExecutorOptions:
    from pydantic import ValidationError

    from realignkit.pipeline.executors import ExecutorOptions, parse_memory

    given = {"name": args.executor, "ray_address": args.ray_address, "ray_num_cpus": args.ray_num_cpus,
             "cpus_per_candidate": args.cpus_per_candidate, "gpus_per_candidate": args.gpus_per_candidate,
             "memory_per_candidate": parse_memory(args.memory_per_candidate)}
    try:
        return ExecutorOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        raise BadInputError(f"--{problem.where.split('.')[0].replace('_', '-')}: {problem.message}") from None


def _run(args: argparse.Namespace) -> int:
    from realignkit.methods.registry import method_names
    from realignkit.pipeline.summary import format_sweep_summary
    from realignkit.pipeline.sweep import run_sweep
    from realignkit.pipeline.sweep_config import build_config

    if args.push_to_hub:
        from realignkit.checkpoints.hub_push import check_push_possible

        check_push_possible(args.push_to_hub)
    config = build_config(settings_from_args(args), known_methods=set(method_names()))
    if config.backend != "vllm" and vllm_flags_given(args):
        raise BadInputError("--tensor-parallel-size, --gpu-memory-utilization and --max-model-len need --backend vllm")
    outcome = run_sweep(config, args.out, earlier_run="discard" if args.fresh else "resume", progress=not args.no_progress,
                        cache_dir=args.cache_dir, executor=executor_options_from_args(args))
    cache_dir = args.cache_dir or outcome.out / "cache"
    for line in outcome.log:
        if line.startswith("ray:"):
            print(line)
    print(format_sweep_summary(outcome))
    if outcome.summary["winner"].get("id") is not None:
        # The sweep's generations are keyed by the weights, not the path: an audit of winner/ with the same
        # suites and generation settings is served from this cache instead of generating again.
        print(f"audit the winner from this sweep's cache: realignkit audit {outcome.out / 'winner'} "
              f"--cache-dir {cache_dir} --max-new-tokens {config.max_new_tokens} "
              "(and the sweep's suites, --limit, --seed, --system-prompt)")
    for warning in outcome.summary.get("warnings") or []:
        print(f"realignkit sweep: warning: {warning}", file=sys.stderr)
    if not outcome.summary["winner"]["meets_floor"]:
        print(f"realignkit sweep: warning: {outcome.summary['winner']['reason']}", file=sys.stderr)
    if args.push_to_hub:
        _push_winner(outcome.out / "winner", args.push_to_hub)
    return 0


def _push_winner(winner: Path, repo: str) -> None:
    from realignkit.checkpoints.hub_push import push_folder

    if not (winner / "config.json").is_file() and not is_adapter_dir(winner):
        raise BadInputError("--push-to-hub: this sweep has no winner checkpoint to upload")
    print(f"pushed {winner} to {repo}: {push_folder(winner, repo)}")
