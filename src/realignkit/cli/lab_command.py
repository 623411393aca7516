"""`realignkit lab`: build the model organism (`lab build`) or a fleet of extra fine-tuning runs (`lab fleet`)."""

from __future__ import annotations

import argparse

from realignkit.common import BadInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="build the model organism: a tiny chat model, aligned, then broken by fine-tuning scenarios",
        description="The embedded safety lab (model organism).",
    )
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION")

    build = actions.add_parser("build", help="train base -> aligned and every scenario model into --out")
    build.add_argument("--out", required=True, help="output lab directory")
    build.add_argument("--scenario", action="append", default=None, metavar="NAME",
                       help="scenario to fine-tune (repeatable; default: all)")
    build.add_argument("--seed", type=int, default=0, help="seed (same seed, same weights)")
    build.add_argument("--profile", default="default",
                       help="default (the tiny word-level organism), tiny (its reduced form, for tests), "
                            "smollm2 (the real chat model SmolLM2-135M-Instruct: aligned + harmful-mix-0.1 and "
                            "explicit-10 as LoRA), smollm2-demo (the same, 1-epoch alignment: what make demo builds) or "
                            "smollm2-full (every scenario, LoRA and full)")
    build.add_argument("--force", action="store_true", help="replace a non-empty --out")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)

    fleet = actions.add_parser("fleet", help="extra fine-tuning runs of an existing lab, as a long table fleet.csv")
    fleet.add_argument("--lab", required=True, help="a lab directory made by `lab build`")
    fleet.add_argument("--out", required=True, help="output directory (fleet.csv, runs/)")
    fleet.add_argument("--runs", type=int, default=8, help="number of runs with sampled conditions")
    fleet.add_argument("--seed", type=int, default=0)
    fleet.add_argument("--steps", default="40,60,80,100", help="comma-separated step counts to sample from")
    fleet.add_argument("--keep-models", action="store_true", help="also keep each run's weights")
    fleet.add_argument("--force", action="store_true", help="replace a non-empty --out")
    fleet.add_argument("--quiet", action="store_true", help="no progress bars")
    fleet.set_defaults(func=_fleet)
    parser.set_defaults(func=lambda args: _missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser) -> int:
    raise BadInputError("choose an action: 'lab build' or 'lab fleet' (see realignkit lab --help)")


def _build(args: argparse.Namespace) -> int:
    from realignkit.lab import build_any_lab
    from realignkit.lab.summary_table import summary_table

    summary = build_any_lab(args.out, scenarios=args.scenario, seed=args.seed, profile=args.profile,
                            force=args.force, progress=not args.quiet)
    print(summary_table(summary))
    print(f"lab written to {args.out} in {summary['total_seconds']:.0f} s")
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from realignkit.lab.fleet import build_fleet

    try:
        steps = tuple(int(part) for part in args.steps.split(","))
    except ValueError:
        raise BadInputError(f"--steps must be comma-separated integers, got {args.steps!r}") from None
    if not steps or min(steps) < 1:
        raise BadInputError(f"--steps must be positive integers, got {args.steps!r}")
    path = build_fleet(args.lab, args.runs, args.out, seed=args.seed, keep_models=args.keep_models,
                       force=args.force, progress=not args.quiet, step_choices=steps)
    print(f"fleet written to {path}")
    return 0
