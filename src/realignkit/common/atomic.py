"""Outputs appear whole or not at all: write into a sibling temp dir, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from realignkit.common.errors import BadInputError


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def check_output_not_inside_inputs(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output dir that equals, contains or sits inside an input (we never modify inputs)."""
    out_path = _resolved(out)
    for item in inputs:
        if item is None:
            continue
        in_path = _resolved(item)
        if out_path == in_path or in_path in out_path.parents or out_path in in_path.parents:
            raise BadInputError(f"output dir {str(out)!r} overlaps input {str(item)!r}; choose another --out")


def prepare_output_dir(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse an existing non-empty output dir unless force is set; return its resolved path."""
    out_path = _resolved(out)
    if out_path.exists() and not out_path.is_dir():
        raise BadInputError(f"--out {str(out)!r} exists and is not a directory")
    existing_parent = next(p for p in out_path.parents if p.exists())
    if not existing_parent.is_dir():
        raise BadInputError(f"--out {str(out)!r} cannot be created: {str(existing_parent)!r} is not a directory")
    if out_path.is_dir() and any(out_path.iterdir()) and not force:
        raise BadInputError(f"--out {str(out)!r} exists and is not empty; pass --force to replace it")
    return out_path


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the block runs, so `finally` clauses clean temp dirs."""

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not in the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temp dir next to `out`; on success it replaces `out`, on any error or SIGTERM it is removed."""
    out_path = prepare_output_dir(out, force=force)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent))
    # mkdtemp makes the dir 0700; give the published output the usual umask-based mode instead.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        with sigterm_as_exit():
            yield tmp
            if out_path.exists():
                # Move the old dir aside first so the swap leaves either the old or the new output, never a mix.
                old = out_path.with_name(f".{out_path.name}.old-{os.getpid()}")
                os.replace(out_path, old)
                os.replace(tmp, out_path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
