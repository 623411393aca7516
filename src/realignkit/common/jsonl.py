"""One JSONL reader for every user file (suites, calibration sets, completions): errors name the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from realignkit.common.errors import BadInputError


def read_jsonl_objects(path: str | os.PathLike[str], what: str = "JSONL") -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a UTF-8 JSONL file.

    Raises BadInputError for a missing/non-UTF-8/empty file, a line that is not JSON, or a non-object line.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise BadInputError(f"{what} file {str(path)!r} does not exist or is not a file")
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{what} file {str(path)!r} is not UTF-8 text ({exc.reason})") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise BadInputError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise BadInputError(f"{what} file {str(path)!r} is empty; it needs at least one JSON line")
    return rows
