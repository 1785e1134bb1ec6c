"""labelsync's own memory: SQLite, so it never asks Label Studio "did I send this?".

Tables:
- files: every file seen, with the stat and hash it had when last decided;
- versions: each (conversation, version) in Label Studio, with its task id;
- outbox: versions handed to Label Studio whose outcome is not yet recorded.
  A row here after a crash means "maybe imported": it is resolved by asking
  Label Studio for its sync_key, never by importing blindly.

Every write is one explicit transaction; WAL keeps `labelsync status` readable
while the daemon writes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labelsync.files import FileStat

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Index i upgrades the schema from version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        thread_id TEXT,
        status TEXT NOT NULL,          -- synced | waiting | quarantined
        reason TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX files_status ON files (status) WHERE status != 'synced';
    CREATE TABLE versions (
        thread_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        sync_key TEXT NOT NULL UNIQUE,
        task_id INTEGER NOT NULL,
        source_file TEXT NOT NULL,
        synced_at REAL NOT NULL,
        PRIMARY KEY (thread_id, version)
    );
    CREATE TABLE outbox (
        sync_key TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source_file TEXT NOT NULL,
        sent_at REAL NOT NULL
    );
    """,
)

STATE_FILE = "state.sqlite3"


class StateError(Exception):
    """The state directory can not be used (locked, foreign, or from a newer labelsync)."""


@dataclass(frozen=True)
class FileRecord:
    stat: FileStat
    sha256: str
    thread_id: str | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class VersionRecord:
    thread_id: str
    version: int
    sync_key: str
    task_id: int
    source_file: str


@dataclass(frozen=True)
class Pending:
    """One outbox row: a version handed to Label Studio, outcome not yet recorded."""

    sync_key: str
    thread_id: str
    version: int
    source_file: str
    sent_at: float


class State:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str) -> State:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a version recorded here must survive a power cut, or it is sent twice.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        state = cls(db)
        state._migrate()
        return state

    def _migrate(self) -> None:
        with self.transaction():
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"the state was written by a newer labelsync (schema {current}, "
                    f"this one knows {SCHEMA_VERSION}): upgrade labelsync"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- which Label Studio project this state belongs to ----------------------------
    def bind(self, url: str, project_id: int) -> None:
        """Tie the state to one project: its versions mean nothing for another.

        The URL may change (a new host name, a proxy) without the project changing,
        so only the project id is binding; a URL change is logged.
        """
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'project_id'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('project_id', ?)", (str(project_id),))
            elif row[0] != str(project_id):
                raise StateError(
                    f"this state directory belongs to project {row[0]}, not {project_id}: "
                    "set LABELSYNC_STATE_DIR to a directory of its own for each project"
                )
            previous = db.execute("SELECT value FROM meta WHERE key = 'url'").fetchone()
            if previous is not None and previous[0] != url:
                log.warning(
                    "Label Studio URL changed from %s to %s (same project %d)",
                    previous[0],
                    url,
                    project_id,
                )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('url', ?)", (url,))

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reads ---------------------------------------------------------------------
    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, inode, sha256, thread_id, status, reason FROM files"
        )
        return {r[0]: FileRecord(FileStat(r[1], r[2], r[3]), r[4], r[5], r[6], r[7]) for r in rows}

    def files_for(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        found: dict[str, FileRecord] = {}
        wanted = list(paths)
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, inode, sha256, thread_id, status, reason FROM files"
                f" WHERE path IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                found[r[0]] = FileRecord(FileStat(r[1], r[2], r[3]), r[4], r[5], r[6], r[7])
        return found

    def file(self, path: str) -> FileRecord | None:
        r = self._db.execute(
            "SELECT size, mtime_ns, inode, sha256, thread_id, status, reason FROM files"
            " WHERE path = ?",
            (path,),
        ).fetchone()
        return FileRecord(FileStat(r[0], r[1], r[2]), r[3], r[4], r[5], r[6]) if r else None

    def versions_of(self, thread_ids: Iterable[str]) -> dict[str, list[VersionRecord]]:
        found: dict[str, list[VersionRecord]] = {}
        ids = list(dict.fromkeys(thread_ids))
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT thread_id, version, sync_key, task_id, source_file FROM versions"
                f" WHERE thread_id IN ({marks}) ORDER BY version",
                chunk,
            )
            for row in rows:
                found.setdefault(row[0], []).append(VersionRecord(*row))
        return found

    def pending(self) -> list[Pending]:
        rows = self._db.execute(
            "SELECT sync_key, thread_id, version, source_file, sent_at FROM outbox"
        )
        return [Pending(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        db = self._db
        counts = {
            "conversations": db.execute(
                "SELECT COUNT(DISTINCT thread_id) FROM versions"
            ).fetchone()[0],
            "tasks": db.execute("SELECT COUNT(*) FROM versions").fetchone()[0],
            "outbox": db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
        }
        for status, n in db.execute("SELECT status, COUNT(*) FROM files GROUP BY status"):
            counts[f"files_{status}"] = n
        return counts

    def problem_files(self, status: str) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT path, COALESCE(reason, '') FROM files WHERE status = ? ORDER BY path",
            (status,),
        )
        return list(rows)

    # -- writes --------------------------------------------------------------------
    def put_outbox(self, db: sqlite3.Connection, rows: Iterable[Pending]) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)",
            [(p.sync_key, p.thread_id, p.version, p.source_file, p.sent_at) for p in rows],
        )

    def drop_outbox(self, db: sqlite3.Connection, sync_keys: Iterable[str]) -> None:
        db.executemany("DELETE FROM outbox WHERE sync_key = ?", [(k,) for k in sync_keys])

    def add_versions(self, db: sqlite3.Connection, rows: Iterable[VersionRecord]) -> None:
        now = time.time()
        db.executemany(
            "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?)",
            [(v.thread_id, v.version, v.sync_key, v.task_id, v.source_file, now) for v in rows],
        )

    def put_files(
        self,
        db: sqlite3.Connection,
        rows: Iterable[tuple[str, FileStat, str, str | None, str, str | None]],
    ) -> None:
        """rows: (path, stat, sha256, thread_id, status, reason)."""
        now = time.time()
        db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (path, st.size, st.mtime_ns, st.inode, sha, thread, status, reason, now)
                for path, st, sha, thread, status, reason in rows
            ],
        )

    def forget_file(self, path: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM files WHERE path = ?", (path,))


class StateLock:
    """One labelsync per state directory: two writers would each send the same version."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateError(
                f"another labelsync (pid {holder}) is using the state directory {self._path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_state_dir(directory: Path) -> tuple[State, StateLock]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = StateLock(directory)
    lock.acquire()
    try:
        return State.open(directory / STATE_FILE), lock
    except BaseException:
        lock.release()
        raise
