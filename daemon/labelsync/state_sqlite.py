"""The SQLite state: one file in the state directory, the embedded default.

One connection (WAL, synchronous=FULL) serves the daemon; the engine's reader
thread opens its own. A write transaction is `BEGIN IMMEDIATE`: it holds the
write lock from its first statement, so it never fails half-way on a busy file.
The state's SQL is written in SQLite's dialect, so nothing is translated here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from labelsync.state import _SQLITE_NOW, Db, StateError, _t


class SqliteBackend:
    kind = "sqlite"
    setting = "LABELSYNC_STATE_DIR"
    what = "state directory"
    # One daemon per state directory (its lock): claims are granted without a query.
    shared = False
    now_sql = _SQLITE_NOW

    def __init__(self, db: sqlite3.Connection, path: str = ":memory:") -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str) -> SqliteBackend:
        with _errors(path):
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a version recorded here must survive a power cut, or it is sent twice.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
        return cls(db, path)

    def __str__(self) -> str:
        return self.path

    @property
    def location(self) -> str:
        return self.path

    def errors(self) -> Any:
        return _errors(self.path)

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self.db.execute(sql, params).fetchall()

    def text(self, value: str) -> str:
        return _t(value) or ""

    def stream(self, sql: str, size: int) -> tuple[list[str], Iterator[list[Any]]]:
        cursor = self.db.execute(sql)
        columns = [d[0] for d in cursor.description]

        def batches() -> Iterator[list[Any]]:
            while batch := cursor.fetchmany(size):
                yield batch

        return columns, batches()

    def schema_version(self, db: Db) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, db: Db, version: int) -> None:
        db.execute(f"PRAGMA user_version={int(version)}")

    def migration(self, index: int, script: str) -> list[str]:
        return [s for s in script.split(";") if s.strip()]

    def share(self) -> SqliteBackend:
        return SqliteBackend.open(self.path)

    def close(self) -> None:
        self.db.close()


@contextmanager
def _errors(path: str) -> Iterator[None]:
    """SQLite's failures as one line that says what to do."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            hint = "it is read-only: labelsync needs to write its state there (LABELSYNC_STATE_DIR)"
        elif "disk is full" in text or "disk I/O error" in text:
            hint = f"the disk holding it is full or failing ({text}): free some space"
        elif "not a database" in text or "malformed" in text or "corrupt" in text:
            hint = (
                f"it is corrupt ({text}): move the state directory aside; labelsync rebuilds "
                "what it sent from the project's tasks on the next start"
            )
        elif "locked" in text:
            hint = f"it is locked by another process ({text})"
        elif "unable to open" in text:
            hint = f"it cannot be opened ({text}): is LABELSYNC_STATE_DIR there and writable?"
        else:
            hint = text
        raise StateError(f"state database {path}: {hint}") from None
