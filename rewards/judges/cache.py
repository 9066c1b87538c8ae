"""A persistent cache of judge answers in one SQLite file, so reruns only ask for what changed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

# sqlite caps the number of bound parameters per statement; stay well below it.
_CHUNK = 500


def judgment_key(*parts: str) -> str:
    """Cache key of one judgment: sha256 of its identifying parts (length-safe through JSON)."""
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgmentCache:
    """Key -> JSON value store; safe to share between threads and tasks of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL is still crash-safe for committed rows; it only skips an fsync per commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"JudgmentCache({str(self.path)!r})"

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM judgments WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Values of the keys that are present, in a few queries instead of one per key."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, value FROM judgments WHERE key IN ({marks})", chunk))
        return found

    def put(self, key: str, value_json: str) -> None:
        self.put_many([(key, value_json)])

    def put_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store all pairs in one committed transaction (all or none)."""
        pairs = list(pairs)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO judgments (key, value) VALUES (?, ?)", pairs)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
