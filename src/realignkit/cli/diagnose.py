"""`realignkit diagnose`: per-layer weight drift between aligned and tuned (and cos with the safety vector)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="per-layer weight drift of a fine-tune (table + plot)",
        description="Per layer and module type: ‖τ‖ and ‖τ‖/‖θ_aligned‖ with τ = tuned − aligned, and "
        "cos(τ, δ) with the safety vector δ = aligned − base when --base is given. Writes diagnose.csv, "
        "diagnose.json, diagnose.png and realignkit.json to --out.",
    )
    parser.add_argument("--aligned", required=True, help="the safety-aligned parent model dir")
    parser.add_argument("--tuned", required=True, help="fine-tuned model dir or LoRA adapter dir")
    parser.add_argument("--base", help="pre-alignment model dir (enables cos(τ, δ))")
    parser.add_argument("--out", required=True, help="output dir")
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin) checkpoints")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from realignkit.diagnose import format_table, run_diagnose

    rows = run_diagnose(
        args.aligned,
        args.tuned,
        args.out,
        base=args.base,
        force=args.force,
        allow_pickle=args.allow_pickle,
        progress=not args.quiet,
    )
    print(format_table(rows))
    print(f"wrote {args.out}/diagnose.csv, diagnose.json, diagnose.png")
    return 0
