"""`realignkit demo`: build a lab (by default the real chat model SmolLM2-135M-Instruct, aligned and broken here),
audit every scenario, sweep repairs where safety was lost, and write DIR/index.html with one summary table (all
numbers on the test split). Rerunning resumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from realignkit.cli.judge_args import add_judge_arguments, judge_options_from_args
from realignkit.common import BadInputError, check_output_not_inside_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole story offline: lab (SmolLM2 or the organism) -> audits -> repair sweeps -> index.html",
        description=__doc__,
    )
    parser.add_argument("--out", required=True, help="demo directory (rerun to resume)")
    parser.add_argument("--seed", type=int, default=0, help="lab seed (default 0)")
    parser.add_argument("--profile", default="smollm2-demo",
                        help="smollm2-demo (default: the real SmolLM2-135M-Instruct with a 1-epoch alignment, under 20 "
                             "minutes on 2 CPU cores the first time), smollm2 (the full 2-epoch alignment), "
                             "smollm2-full, default (the tiny word-level organism) or tiny (its reduced form)")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable; default: the profile's)")
    parser.add_argument("--lab", help="reuse this lab dir when its version, seed and profile match")
    parser.add_argument("--methods", help="comma-separated repair methods (default: the profile's lean, cheap set)")
    parser.add_argument("--utility-floor", type=float, default=0.9, help="keep utility >= FLOOR x tuned's (0.9)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N items per suite and split (default: 20 for the organism; for SmolLM2 the lab's own measurement limit, 32 or 40)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_judge_arguments(parser.add_argument_group("judge (decides refused/harmful in every audit and sweep)"))
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from realignkit.pipeline.demo import DemoSettings, run_demo
    from realignkit.pipeline.summary import format_demo_summary

    if not 0.0 < args.utility_floor <= 1.0:
        raise BadInputError(f"--utility-floor must be in (0, 1], got {args.utility_floor}")
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"--limit must be >= 1, got {args.limit}")
    methods = None  # the profile's preset (DEMO_METHODS for the organism)
    if args.methods is not None:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if not methods:
            raise BadInputError("--methods is empty; name at least one method (e.g. interpolate)")
    out = Path(args.out).expanduser().resolve()
    lab = Path(args.lab).expanduser().resolve() if args.lab else None
    _check_demo_out(out, lab, args.out)
    settings = DemoSettings.for_profile(
        out, args.profile, seed=args.seed, scenarios=args.scenario, lab=lab, methods=methods,
        utility_floor=args.utility_floor, limit=args.limit, progress=not args.no_progress, judge=args.judge,
        judge_options={k: v for k, v in judge_options_from_args(args).items() if v is not None},
    )
    summary = run_demo(settings)
    print(format_demo_summary(summary, out))
    return 0


def _check_demo_out(out: Path, lab: Path | None, given: str) -> None:
    """The demo resumes in its own dir; it must not write into (or replace parts of) anything else."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {given!r} exists and is not a directory")
    earlier_demo = any((out / name).is_file() for name in ("summary.json", "realignkit.json", "lab/lab.json"))
    # Dot-entries are our own temp dirs (e.g. a lab build killed mid-way): they do not make the dir foreign.
    visible = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    if visible and not earlier_demo:
        raise BadInputError(f"--out {given!r} is a non-empty directory that is not an earlier demo; choose another --out")
    if lab is not None and lab != out / "lab":
        check_output_not_inside_inputs(out, [lab])
