"""`realignkit diagnose`: per-layer weight drift between aligned and tuned (and cos with the safety vector)."""

from __future__ import annotations

import argparse

from realignkit.common.errors import BadInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="per-layer weight drift of a fine-tune (table + plot)",
        description="Per layer and module type: ‖τ‖ and ‖τ‖/‖θ_aligned‖ with τ = tuned − aligned, and "
        "cos(τ, δ) with the safety vector δ = aligned − base when --base is given. Writes diagnose.csv, "
        "diagnose.json, diagnose.png and realignkit.json to --out.",
    )
    parser.add_argument("--aligned", required=True, help="the safety-aligned parent model (dir, hub id or MODEL+LORA)")
    parser.add_argument("--tuned", required=True, help="fine-tuned model dir, LoRA adapter dir, hub id or MODEL+LORA")
    parser.add_argument("--base", help="pre-alignment model dir (enables cos(τ, δ))")
    parser.add_argument("--out", required=True, help="output dir")
    parser.add_argument("--scan", action="store_true",
                        help="instead of the weight table: restore one layer at a time from aligned and audit "
                        "--suite (writes scan.json/png/html)")
    parser.add_argument("--suite", action="append", default=[], metavar="NAME_OR_FILE", help="suite for --scan")
    parser.add_argument("--limit", type=int, default=40, help="items per suite for --scan (default 40)")
    parser.add_argument("--judge", default="refusal", help="judge for --scan (default refusal)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin) checkpoints")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from realignkit.checkpoints.lora_merge import local_dir

    args.aligned = local_dir(args.aligned, "--aligned")
    args.tuned = local_dir(args.tuned, "--tuned", adapter_base=args.aligned)
    args.base = local_dir(args.base, "--base")
    if args.scan:
        return _run_scan(args)
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


def _run_scan(args: argparse.Namespace) -> int:
    from realignkit.diagnose.scan import ScanOptions, run_scan

    if args.limit is not None and args.limit < 1:
        raise BadInputError("--limit must be at least 1")
    options = ScanOptions(judge=args.judge, limit=args.limit, allow_pickle=args.allow_pickle, progress=not args.quiet)
    scan = run_scan(args.aligned, args.tuned, args.suite, args.out, force=args.force, options=options)
    print(f"scanned {len(scan.get('layers', []))} layer groups; wrote {args.out}/scan.json, scan.png, scan.html")
    return 0
