"""Provenance: every output directory gets a realignkit.json with command, parameters, inputs, versions, timing."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

MANIFEST_NAME = "realignkit.json"
_FULL_HASH_LIMIT = 64 * 1024 * 1024  # larger files are fingerprinted by size + head + tail


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 of a file; for big files, of (size, first and last 4 MiB) so fingerprints stay cheap."""
    file_path = Path(path)
    digest = hashlib.sha256()
    size = file_path.stat().st_size
    with file_path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
            return "sha256:" + digest.hexdigest()
        digest.update(str(size).encode())
        digest.update(handle.read(4 << 20))
        handle.seek(-(4 << 20), os.SEEK_END)
        digest.update(handle.read(4 << 20))
    return "sha256-sampled:" + digest.hexdigest()


def path_fingerprint(path: str | os.PathLike[str]) -> str:
    """Fingerprint of a file or of a directory (names + file fingerprints, sorted), for the manifest's record of
    its inputs (provenance: every file counts, big files are sampled). Never a cache key: caches keyed by a model
    use `common.fingerprint.weights_fingerprint`, which the same weights in another directory share."""
    root = Path(path)
    if root.is_file():
        return file_fingerprint(root)
    digest = hashlib.sha256()
    for child in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(root)).encode())
        digest.update(file_fingerprint(child).encode())
    return "sha256:" + digest.hexdigest()


def _versions() -> dict[str, str]:
    from realignkit import __version__

    versions = {"realignkit": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("torch", "transformers", "safetensors", "peft"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions


def write_manifest(
    out_dir: str | os.PathLike[str],
    *,
    command: str,
    parameters: dict[str, Any],
    inputs: dict[str, str | os.PathLike[str] | None] | None = None,
    started: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write out_dir/realignkit.json and return its path."""
    now = time.time()
    manifest: dict[str, Any] = {
        "command": command,
        "parameters": parameters,
        "inputs": {
            role: {"path": str(p), "fingerprint": path_fingerprint(p)}
            for role, p in (inputs or {}).items()
            if p is not None and Path(p).exists()
        },
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "seconds": round(now - started, 3) if started is not None else None,
    }
    if extra:
        manifest.update(extra)
    path = Path(out_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path
