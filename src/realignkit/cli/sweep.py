"""`realignkit sweep`: try every repair method's small grid, show the Pareto front, pick under a utility floor."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from realignkit.cli.judge_args import add_judge_arguments, judge_options_from_args
from realignkit.common.errors import BadInputError

EPILOG = """examples:
  realignkit sweep --aligned lab/aligned --tuned lab/harmful-mix-0.1-full --base lab/base --out sweeps/hm01
  realignkit sweep --config recipe.yaml --out sweeps/hm01 --methods interpolate,dare --utility-floor 0.95

The run dir resumes: rerun the same command after a kill and finished candidates are skipped.
Recipe keys (YAML): aligned, tuned, base, unaligned, methods, grids {method: {param: [values]}}, utility_floor, max_degenerate_rate,
suites, calibration {antidote: FILE, somf: FILE}, limit, max_new_tokens, batch_size, system_prompt, seed,
keep_candidates, judge, judge_options."""


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
    from realignkit.pipeline.config import load_recipe

    settings: dict[str, Any] = load_recipe(args.config) if args.config else {}
    simple = {"aligned": args.aligned, "tuned": args.tuned, "base": args.base, "unaligned": args.unaligned,
              "utility_floor": args.utility_floor, "max_degenerate_rate": args.max_degenerate_rate,
              "limit": args.limit, "max_new_tokens": args.max_new_tokens,
              "seed": args.seed, "keep_candidates": args.keep_candidates, "system_prompt": args.system_prompt}
    settings.update({k: v for k, v in simple.items() if v is not None})
    if args.judge is not None:
        settings["judge"] = args.judge
    judge_args = argparse.Namespace(**{**vars(args), "judge": settings.get("judge", "refusal")})
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


def _run(args: argparse.Namespace) -> int:
    from realignkit.methods.registry import method_names
    from realignkit.pipeline.config import build_config
    from realignkit.pipeline.summary import format_sweep_summary
    from realignkit.pipeline.sweep import run_sweep

    if args.push_to_hub:
        from realignkit.checkpoints.hub_push import check_push_possible

        check_push_possible(args.push_to_hub)
    config = build_config(settings_from_args(args), known_methods=set(method_names()))
    outcome = run_sweep(config, args.out, fresh=args.fresh, progress=not args.no_progress)
    print(format_sweep_summary(outcome))
    if outcome.summary["winner"].get("id") is not None:
        # The sweep's generations are keyed by the weights, not the path: an audit of winner/ with the same
        # suites and generation settings is served from this cache instead of generating again.
        print(f"audit the winner from this sweep's cache: realignkit audit {outcome.out / 'winner'} "
              f"--cache-dir {outcome.out / 'cache'} --max-new-tokens {config.max_new_tokens} "
              "(and the sweep's suites, --limit, --seed, --system-prompt)")
    for warning in outcome.summary.get("warnings") or []:
        print(f"realignkit sweep: warning: {warning}", file=sys.stderr)
    if not outcome.summary["winner"]["meets_floor"]:
        print(f"realignkit sweep: warning: {outcome.summary['winner']['reason']}", file=sys.stderr)
    if args.push_to_hub:
        _push_winner(outcome.out / "winner", args.push_to_hub)
    return 0


def _push_winner(winner: Any, repo: str) -> None:
    from realignkit.checkpoints.hub_push import push_folder

    if not (winner / "config.json").is_file() and not (winner / "adapter_config.json").is_file():
        raise BadInputError("--push-to-hub: this sweep has no winner checkpoint to upload")
    print(f"pushed {winner} to {repo}: {push_folder(winner, repo)}")
