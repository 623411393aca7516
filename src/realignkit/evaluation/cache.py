"""On-disk key/value cache (SQLite, stdlib) for generations and judge calls.

Keys are sha256 digests of JSON-encoded parts, e.g. (model fingerprint, prompt, settings), so a cache hit
means exactly the same question was asked of exactly the same model with the same decoding settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CACHE_ENV = "REALIGNKIT_CACHE_DIR"


def default_cache_dir() -> Path:
    """$REALIGNKIT_CACHE_DIR, else ~/.cache/realignkit."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "realignkit"


def cache_key(*parts: Any) -> str:
    encoded = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


class KeyValueCache:
    """A tiny persistent string store. Safe to share between processes (SQLite locking)."""

    def __init__(self, path: str | os.PathLike[str], table: str = "entries") -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        with self._connect() as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._connect() as connection:
            # SQLite caps the number of bound parameters; query in chunks.
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(f"SELECT key, value FROM {self.table} WHERE key IN ({marks})", chunk)
                found.update(rows.fetchall())
        return found

    def put_many(self, entries: Iterable[tuple[str, str]]) -> None:
        with self._connect() as connection:
            connection.executemany(f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", list(entries))

    def __len__(self) -> int:
        with self._connect() as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])
