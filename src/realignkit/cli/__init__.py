"""Command line: parse, validate, call the library. Each subcommand lives in its own module here.

Subcommand modules expose `register(subparsers)`, which adds a parser and sets `func(args) -> int | None`.
They import the library lazily inside `func`, so `realignkit --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from realignkit import __version__
from realignkit.common.errors import BadInputError

SUBCOMMAND_MODULES = ("repair", "diagnose", "audit", "judge", "lab", "sweep", "demo", "drift")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realignkit",
        description="Audit, predict and repair safety degradation after fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"realignkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"realignkit.cli.{name}_command")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads made real-model
    # generation up to 10x slower. Only takes effect if torch is not loaded yet (the library loads it lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except BadInputError as exc:
        print(f"realignkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A path the user named cannot be read or written (a file where a dir is expected, permissions, a full
        # disk): one line, not a traceback. Outputs are atomic, so nothing partial was left behind.
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"realignkit {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"realignkit {args.command}: interrupted", file=sys.stderr)
        return 130
    if os.environ.get("REALIGNKIT_DEBUG_EXIT"):
        print(f"exit {code}", file=sys.stderr)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
