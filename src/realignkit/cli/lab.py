"""`realignkit lab`: placeholder until its issue lands; the owning work replaces this module."""

from __future__ import annotations

import argparse

from realignkit.common.errors import BadInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lab", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise BadInputError("'lab' is not available in this build yet")
