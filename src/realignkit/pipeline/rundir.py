"""The sweep's run directory: resumable work in `<out>.partial/`, published whole to `<out>` at the end.

Layout of the work dir (what survives a kill):
- `run.json`               the argument set (config payload + input fingerprints) and its fingerprint;
- `candidates/<id>.json`   one finished candidate each, written atomically (temp file + rename);
- `cache/`                 the generation cache (keyed by weights fingerprint: `realignkit audit OUT/winner
                           --cache-dir OUT/cache` with the same suites and settings generates nothing);
- `work/`                  scratch (candidate checkpoints being written/evaluated); wiped on every start.

A rerun with the same arguments finds `<out>.partial/` and skips finished candidates; a rerun with a different
argument set is refused with the changed keys named (or started over with `--fresh`). `<out>` itself only
ever appears complete: the work dir is renamed onto it after sweep.json, the report and the winner are in.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from realignkit.common import BadInputError

RUN_FILE = "run.json"
FINAL_FILE = "sweep.json"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON via a temp file + rename, so a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from a file write, or SQLite's own "database or disk is full" (the generation cache)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


class RunDir:
    """Owns `<out>.partial/` while a sweep runs, and publishes it to `<out>`."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out).expanduser().resolve()
        self.work = self.out.with_name(self.out.name + ".partial")

    @property
    def candidates_dir(self) -> Path:
        return self.work / "candidates"

    @property
    def cache_dir(self) -> Path:
        return self.work / "cache"

    @property
    def scratch(self) -> Path:
        return self.work / "work"

    def completed_run(self, arguments: dict[str, Any], *, replace_changed: bool = False) -> bool:
        """True when `<out>` already holds a finished sweep of exactly these arguments.

        Raises BadInputError when `<out>` holds something else (another sweep, unless `replace_changed`: then it
        is replaced when this run publishes, or unrelated files)."""
        if not self.out.exists():
            return False
        run_file = self.out / RUN_FILE
        if not (self.out / FINAL_FILE).is_file() or not run_file.is_file():
            if self.out.is_dir() and not any(self.out.iterdir()):
                return False
            raise BadInputError(f"--out {str(self.out)!r} exists and is not a sweep run; choose another --out")
        previous = json.loads(run_file.read_text())
        if previous.get("fingerprint") == arguments["fingerprint"]:
            return True
        if replace_changed:
            return False
        changed = _changed_keys(previous.get("arguments", {}), arguments["arguments"])
        raise BadInputError(
            f"--out {str(self.out)!r} holds a finished sweep with other arguments (changed: {', '.join(changed)}); "
            "pass --fresh to replace it, or choose another --out"
        )

    def open(self, arguments: dict[str, Any], *, fresh: bool, replace_changed: bool = False) -> None:
        """Create the work dir, or reuse it when it holds an unfinished run of the same arguments (an unfinished
        run of other arguments is refused, or with `replace_changed` discarded)."""
        run_file = self.work / RUN_FILE
        if replace_changed and run_file.is_file():
            fresh = fresh or json.loads(run_file.read_text()).get("fingerprint") != arguments["fingerprint"]
        if self.work.exists() and (fresh or not run_file.is_file()):
            shutil.rmtree(self.work)
        if run_file.is_file():
            previous = json.loads(run_file.read_text())
            if previous.get("fingerprint") != arguments["fingerprint"]:
                changed = _changed_keys(previous.get("arguments", {}), arguments["arguments"])
                raise BadInputError(
                    f"{str(self.work)!r} holds an unfinished sweep with other arguments "
                    f"(changed: {', '.join(changed) or 'input checkpoints'}); rerun with the same arguments to "
                    "resume, or pass --fresh to start over"
                )
        self.work.mkdir(parents=True, exist_ok=True)
        self.candidates_dir.mkdir(exist_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)  # half-written checkpoints from a killed run
        self.scratch.mkdir()
        if not run_file.is_file():
            write_json_atomic(run_file, arguments)

    def state_path(self, candidate_id: str) -> Path:
        return self.candidates_dir / f"{candidate_id}.json"

    def load_state(self, candidate_id: str) -> dict[str, Any] | None:
        path = self.state_path(candidate_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def save_state(self, candidate_id: str, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_path(candidate_id), state)

    def publish(self) -> Path:
        """Rename the finished work dir onto `<out>` (moving an older run aside first, then deleting it)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
            os.replace(self.work, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.work, self.out)
        return self.out
