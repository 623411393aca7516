"""`realignkit judge --input FILE(.jsonl|.csv) [--prompt-field F] [--response-field F] [--judge NAME] --out FILE.jsonl`."""

from __future__ import annotations

import argparse

from realignkit.cli.judge_args import add_judge_arguments, judge_options_from_args
from realignkit.cli.options import add_vllm_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge", help="judge existing completions (adds `refused`), with agreement vs human labels",
        description="Judge existing completions from a CSV or JSONL file and write them as JSONL with `refused`, "
        "`judge` and `judge_version` added. With --label-field, print agreement with the human label.",
    )
    parser.add_argument("--input", required=True, metavar="FILE", help=".csv (with header) or .jsonl")
    parser.add_argument("--out", required=True, metavar="FILE.jsonl")
    parser.add_argument("--prompt-field", help="default: prompt")
    parser.add_argument("--response-field", help="default: response, completion or output")
    parser.add_argument("--label-field", help="human label column (e.g. XSTest final_label)")
    parser.add_argument("--refusal-labels", help="comma-separated label values that mean refusal "
                        "(default: values containing 'refus', or true/1/yes)")
    add_judge_arguments(parser)
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    add_vllm_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from realignkit.evaluation.judge_file import Columns, judge_file

    labels = [label.strip() for label in args.refusal_labels.split(",")] if args.refusal_labels else None
    columns = Columns(prompt=args.prompt_field, response=args.response_field, label=args.label_field,
                      refusal_labels=labels)
    summary = judge_file(args.input, args.out, columns=columns, judge=args.judge,
                         judge_options=judge_options_from_args(args), force=args.force)
    judge = summary["judge"]
    print(f"judged {summary['n']} rows with {judge['name']} {judge['version']}: {summary['refused']} refused")
    if "agreement" in summary:
        print(f"agreement with {summary['label_field']}: {summary['agreement']:.3f} (n={summary['n']})")
        for label, counts in summary["by_label"].items():
            print(f"  {summary['label_field']} = {label}: judged refused {counts['refused']} of {counts['n']}")
    print(f"wrote {args.out}")
    return 0
