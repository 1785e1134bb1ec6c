"""labelsync's own memory, so it never asks Label Studio "did I send this?" per file.

Tables (schema version 2):
- files: every file seen: the stat and content hash it had when last read
  (documents), or how far it was read and the fingerprint of its first line
  (JSON Lines, tailed);
- conversations: what was last decided for each conversation of each file
  (synced, waiting, too short, quarantined, not sampled) and why;
- versions: each (project, conversation, version) in Label Studio, with its task id;
- outbox: versions handed to Label Studio whose outcome is not yet recorded.
  A row here after a crash means "maybe imported": it is resolved by asking
  Label Studio for its sync key, never by importing blindly;
- lines, tailed: for conversations assembled from log lines, which lines
  (file, fingerprint, offset, length) make each one, and whether new lines
  arrived since it was last decided. No message text is stored.

Every write is one explicit transaction (`with state.transaction() as tx`);
WAL keeps `labelsync status` readable while the daemon writes.

Two backends hold these tables: SQLite, one file per state directory (the
default, state_sqlite.py), and PostgreSQL (LABELSYNC_STATE_URL, state_postgres.py).
The SQL below is written once, in SQLite's dialect; PostgreSQL's backend translates
it (placeholders, column types) in one place. `State` and `Tx` are the same for both.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from labelsync.files import FileStat

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
STATE_FILE = "state.sqlite3"

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, sha256 TEXT NOT NULL, thread_id TEXT,
    status TEXT NOT NULL, reason TEXT, updated_at REAL NOT NULL
);
CREATE TABLE versions (
    thread_id TEXT NOT NULL, version INTEGER NOT NULL, sync_key TEXT NOT NULL UNIQUE,
    task_id INTEGER NOT NULL, source_file TEXT NOT NULL, synced_at REAL NOT NULL,
    PRIMARY KEY (thread_id, version)
);
CREATE TABLE outbox (
    sync_key TEXT PRIMARY KEY, thread_id TEXT NOT NULL, version INTEGER NOT NULL,
    source_file TEXT NOT NULL, sent_at REAL NOT NULL
);
"""

# Version 1 -> 2: a file may hold many conversations (and be tailed); versions
# and the outbox are per project (routing); feedback is tracked apart from content.
_V2 = """
ALTER TABLE files RENAME TO files_v1;
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',     -- documents: the content last read
    head TEXT,                            -- logs: fingerprint of the first line it held
    status TEXT NOT NULL,                 -- read | quarantined | unreadable | skipped
    reason TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE conversations (
    path TEXT NOT NULL,
    key TEXT NOT NULL,                    -- the conversation's id, or its position if unreadable
    thread_id TEXT,
    position TEXT NOT NULL DEFAULT '',    -- '' (the whole file), '[3]', 'line 17'
    status TEXT NOT NULL,   -- synced | waiting | too_short | quarantined | rejected
                            -- | not_sampled | deferred (over a cap, sent later)
    reason TEXT,
    sync_key TEXT,
    project_id INTEGER,
    rule TEXT,                            -- the rule that matched it (routing, always send)
    updated_at REAL NOT NULL,
    PRIMARY KEY (path, key)
);
CREATE INDEX conversations_status ON conversations (status) WHERE status != 'synced';
INSERT INTO files (path, size, mtime_ns, inode, sha256, status, reason, updated_at)
    SELECT path, size, mtime_ns, inode, sha256,
           CASE WHEN status = 'quarantined' THEN 'quarantined' ELSE 'read' END,
           CASE WHEN status = 'quarantined' THEN reason END, updated_at
    FROM files_v1;
INSERT INTO conversations (path, key, thread_id, status, reason, updated_at)
    SELECT path, thread_id, thread_id, status, reason, updated_at
    FROM files_v1 WHERE status != 'quarantined' AND thread_id IS NOT NULL;
DROP TABLE files_v1;
ALTER TABLE versions RENAME TO versions_v1;
CREATE TABLE versions (
    project_id INTEGER NOT NULL,
    thread_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    sync_key TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    source_file TEXT NOT NULL,
    synced_at REAL NOT NULL,
    feedback_key TEXT NOT NULL DEFAULT '',
    retired_at REAL,                      -- taken out of the project (nothing human on it)
    kept INTEGER NOT NULL DEFAULT 0,      -- superseded, but kept: a person worked on it
    PRIMARY KEY (project_id, thread_id, version),
    UNIQUE (project_id, sync_key)
);
INSERT INTO versions (project_id, thread_id, version, sync_key, task_id, source_file, synced_at)
    SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'project_id'), 0),
           thread_id, version, sync_key, task_id, source_file, synced_at
    FROM versions_v1;
DROP TABLE versions_v1;
ALTER TABLE outbox RENAME TO outbox_v1;
CREATE TABLE outbox (
    project_id INTEGER NOT NULL,
    sync_key TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    source_file TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (project_id, sync_key)
);
INSERT INTO outbox
    SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'project_id'), 0),
           sync_key, thread_id, version, source_file, sent_at
    FROM outbox_v1;
DROP TABLE outbox_v1;
CREATE TABLE logs (                       -- how far each log was read, known by its first line,
    head TEXT PRIMARY KEY,                -- so a renamed, rotated or copied log is not read twice
    path TEXT NOT NULL,                   -- where it was last read
    read_offset INTEGER NOT NULL,         -- bytes read, whole lines
    read_lines INTEGER NOT NULL,          -- lines read (for "line 17")
    tail_check TEXT,                      -- hash of the bytes before read_offset
    updated_at REAL NOT NULL
);
CREATE TABLE lines (
    thread_id TEXT NOT NULL,
    path TEXT NOT NULL,
    head TEXT NOT NULL,
    line_offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    line_no INTEGER NOT NULL
);
CREATE INDEX lines_thread ON lines (thread_id);
CREATE INDEX lines_file ON lines (path, head);
CREATE TABLE tailed (
    thread_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,                   -- the log its latest line is in
    last_at REAL NOT NULL,                -- wall time its latest line was read
    ended INTEGER NOT NULL DEFAULT 0,
    open INTEGER NOT NULL DEFAULT 1       -- lines arrived since it was last decided
);
CREATE INDEX tailed_open ON tailed (open) WHERE open = 1;
"""

# Index i upgrades the schema from version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (_V1, _V2)


# Every table of the schema, in the order `labelsync state import` copies them.
TABLES = ("meta", "files", "conversations", "versions", "outbox", "logs", "lines", "tailed")


class StateError(Exception):
    """The state can not be used; the message says why and what to do."""


class StateUnavailable(StateError):
    """The state database is out of reach for now (PostgreSQL restarting, the network
    cut): nothing was written by the call that raised it. Wait and call again."""


class Cursor(Protocol):
    def __iter__(self) -> Iterator[Any]: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """One connection, as the SQL of this module uses it: `?` placeholders, SQLite's
    dialect. sqlite3.Connection is one; PostgreSQL's backend translates."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class Backend(Protocol):
    """Where the tables live, and what differs between SQLite and PostgreSQL."""

    kind: str  # sqlite | postgresql
    # What a person is told to change when this state is the wrong one.
    setting: str  # LABELSYNC_STATE_DIR | LABELSYNC_STATE_URL
    what: str  # "state directory" | "state database"

    def __str__(self) -> str:
        """Where the state is, fit for a log line: a path, or a URL without a password."""
        ...

    @property
    def location(self) -> str | Backend:
        """What `State.open` takes to open this state again (another thread's own)."""
        ...

    def errors(self) -> AbstractContextManager[None]:
        """The driver's failures as StateError (or StateUnavailable), one line."""
        ...

    def transaction(self) -> AbstractContextManager[Db]: ...

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

    def text(self, value: str) -> str:
        """A text as this backend stores it: what a lookup of `value` finds."""
        ...

    def stream(self, sql: str, size: int) -> tuple[list[str], Iterator[list[Any]]]:
        """A large result in batches of `size` rows, with its column names."""
        ...

    def schema_version(self, db: Db) -> int: ...

    def set_schema_version(self, db: Db, version: int) -> None: ...

    def migration(self, index: int, script: str) -> list[str]:
        """The statements that upgrade this backend from schema `index` to `index + 1`."""
        ...

    def share(self) -> Backend:
        """The same database for another thread (engine's reader); closed on its own."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FileRecord:
    path: str
    stat: FileStat
    status: str  # read | quarantined | skipped
    reason: str | None = None
    sha256: str = ""
    head: str | None = None


@dataclass(frozen=True)
class LogPosition:
    """How far a log was read; known by the fingerprint of its first line, not its name."""

    head: str
    path: str
    offset: int
    lines: int
    check: str | None


@dataclass(frozen=True)
class ConversationRecord:
    """What was last decided for one conversation of one file."""

    path: str
    key: str
    thread_id: str | None
    status: str  # synced | waiting | too_short | quarantined | rejected | not_sampled | deferred
    reason: str | None = None
    position: str = ""
    sync_key: str | None = None
    project_id: int | None = None
    rule: str | None = None


@dataclass(frozen=True)
class VersionRecord:
    project_id: int
    thread_id: str
    version: int
    sync_key: str
    task_id: int
    source_file: str
    feedback_key: str = ""
    retired: bool = False


@dataclass(frozen=True)
class Pending:
    """One outbox row: a version handed to Label Studio, outcome not yet recorded."""

    project_id: int
    sync_key: str
    thread_id: str
    version: int
    source_file: str
    sent_at: float


@dataclass(frozen=True)
class LineRef:
    """One line of a log that belongs to a conversation: where to read it again."""

    thread_id: str
    path: str
    head: str
    offset: int
    length: int
    line_no: int


@dataclass(frozen=True)
class Tailed:
    thread_id: str
    path: str
    last_at: float
    ended: bool
    open: bool


def _t(text: str | None) -> str | None:
    """Text SQLite can store: a lone surrogate (JSON allows "\\ud800") becomes U+FFFD."""
    if text is None or text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """SQLite allows 999 bound parameters in old builds: stay well under."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Tx:
    """The writes of one transaction."""

    def __init__(self, db: Db, stored: Callable[[str], str] = lambda text: text) -> None:
        self.db = db
        self._stored = stored  # a text as the backend stores it (PostgreSQL: no NUL)

    def put_files(self, rows: Iterable[FileRecord]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO files (path, size, mtime_ns, inode, sha256, head, status, reason,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
            " inode=excluded.inode, sha256=excluded.sha256, head=excluded.head,"
            " status=excluded.status, reason=excluded.reason, updated_at=excluded.updated_at",
            [
                (
                    _t(f.path),
                    f.stat.size,
                    f.stat.mtime_ns,
                    f.stat.inode,
                    f.sha256,
                    f.head,
                    f.status,
                    _t(f.reason),
                    now,
                )
                for f in rows
            ],
        )

    def put_conversations(self, rows: Iterable[ConversationRecord]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO conversations (path, key, thread_id, position, status, reason,"
            " sync_key, project_id, rule, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (path, key) DO UPDATE SET thread_id=excluded.thread_id,"
            " position=excluded.position, status=excluded.status, reason=excluded.reason,"
            " sync_key=excluded.sync_key, project_id=excluded.project_id, rule=excluded.rule,"
            " updated_at=excluded.updated_at",
            [
                (
                    _t(c.path),
                    _t(c.key),
                    _t(c.thread_id),
                    _t(c.position),
                    c.status,
                    _t(c.reason),
                    c.sync_key,
                    c.project_id,
                    c.rule,
                    now,
                )
                for c in rows
            ],
        )

    def keep_only_conversations(self, path: str, keys: Iterable[str]) -> None:
        """After a whole file was read again: forget conversations it no longer holds."""
        keep = {self._stored(k) for k in keys}
        known = [
            r[0] for r in self.db.execute("SELECT key FROM conversations WHERE path = ?", (path,))
        ]
        self.db.executemany(
            "DELETE FROM conversations WHERE path = ? AND key = ?",
            [(path, k) for k in known if k not in keep],
        )

    def add_versions(self, rows: Iterable[VersionRecord]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO versions (project_id, thread_id, version, sync_key, task_id,"
            " source_file, synced_at, feedback_key, retired_at) VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            [
                (
                    v.project_id,
                    _t(v.thread_id),
                    v.version,
                    v.sync_key,
                    v.task_id,
                    _t(v.source_file),
                    now,
                    v.feedback_key,
                    now if v.retired else None,
                )
                for v in rows
            ],
        )

    def set_feedback_key(self, project_id: int, sync_key: str, feedback_key: str) -> None:
        self.db.execute(
            "UPDATE versions SET feedback_key = ? WHERE project_id = ? AND sync_key = ?",
            (feedback_key, project_id, sync_key),
        )

    def retire(self, project_id: int, sync_keys: Iterable[str]) -> None:
        now = time.time()
        self.db.executemany(
            "UPDATE versions SET retired_at = ? WHERE project_id = ? AND sync_key = ?",
            [(now, project_id, k) for k in sync_keys],
        )

    def keep(self, project_id: int, sync_keys: Iterable[str]) -> None:
        self.db.executemany(
            "UPDATE versions SET kept = 1 WHERE project_id = ? AND sync_key = ?",
            [(project_id, k) for k in sync_keys],
        )

    def put_outbox(self, rows: Iterable[Pending]) -> None:
        self.db.executemany(
            "INSERT INTO outbox VALUES (?,?,?,?,?,?) ON CONFLICT (project_id, sync_key)"
            " DO UPDATE SET version=excluded.version, sent_at=excluded.sent_at",
            [
                (p.project_id, p.sync_key, p.thread_id, p.version, p.source_file, p.sent_at)
                for p in rows
            ],
        )

    def drop_outbox(self, rows: Iterable[tuple[int, str]]) -> None:
        self.db.executemany("DELETE FROM outbox WHERE project_id = ? AND sync_key = ?", list(rows))

    def add_lines(self, refs: Iterable[LineRef]) -> None:
        self.db.executemany(
            "INSERT INTO lines VALUES (?,?,?,?,?,?)",
            [(r.thread_id, r.path, r.head, r.offset, r.length, r.line_no) for r in refs],
        )

    def replace_lines(self, thread_id: str, refs: Iterable[LineRef]) -> None:
        """A line that holds a whole conversation replaces what was known of it."""
        self.db.execute("DELETE FROM lines WHERE thread_id = ?", (thread_id,))
        self.add_lines(refs)

    def drop_lines_of(self, head: str) -> None:
        """A log was rewritten in place (same first line, other lines after it): what was
        known of its lines no longer says anything."""
        self.db.execute("DELETE FROM lines WHERE head = ?", (head,))

    def put_logs(self, rows: Iterable[LogPosition]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO logs VALUES (?,?,?,?,?,?) ON CONFLICT (head) DO UPDATE SET"
            " path=excluded.path, read_offset=excluded.read_offset,"
            " read_lines=excluded.read_lines, tail_check=excluded.tail_check,"
            " updated_at=excluded.updated_at",
            [(r.head, _t(r.path), r.offset, r.lines, r.check, now) for r in rows],
        )

    def put_tailed(self, rows: Iterable[Tailed]) -> None:
        self.db.executemany(
            "INSERT INTO tailed VALUES (?,?,?,?,?) ON CONFLICT (thread_id) DO UPDATE SET"
            " path=excluded.path, last_at=excluded.last_at, ended=excluded.ended,"
            " open=excluded.open",
            [(t.thread_id, t.path, t.last_at, int(t.ended), int(t.open)) for t in rows],
        )

    def reopen_tailed(self, thread_ids: Iterable[str]) -> None:
        """Decide these conversations of logs again (after Label Studio rejected them)."""
        self.db.executemany(
            "UPDATE tailed SET open = 1 WHERE thread_id = ?", [(t,) for t in thread_ids]
        )

    def reopen_all_tailed(self) -> None:
        """Decide every conversation of logs again (`backfill --recheck`)."""
        self.db.execute("UPDATE tailed SET open = 1")

    def close_tailed(self, thread_ids: Iterable[str]) -> None:
        self.db.executemany(
            "UPDATE tailed SET open = 0 WHERE thread_id = ?", [(t,) for t in thread_ids]
        )

    def forget_file(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        self.db.execute("DELETE FROM conversations WHERE path = ?", (path,))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def get_meta(self, key: str) -> str | None:
        """Read inside this transaction (what it wrote so far included)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows as another state holds them (`labelsync state import`): no key is merged."""
        if table not in TABLES or not all(c.isidentifier() for c in columns):
            raise ValueError(f"not a state table or column: {table} {columns}")
        self.db.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
            [tuple(_t(v) if isinstance(v, str) else v for v in row) for row in rows],
        )


class State:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.schema_found = SCHEMA_VERSION  # the schema it had when opened (before migrating)

    @property
    def path(self) -> str | Backend:
        """What `State.open` takes to open this state again: a second connection for
        another thread (SQLite), or a second user of the same pool (PostgreSQL)."""
        return self._backend.location

    @property
    def where(self) -> str:
        """Where the state is, fit for a person: a path, or a URL without its password."""
        return str(self._backend)

    @property
    def kind(self) -> str:
        return self._backend.kind

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, where: Path | str | Backend) -> State:
        """A SQLite file, a PostgreSQL URL (password in it, or from libpq's .pgpass),
        or an open state's `path` (another thread's own handle on the same state)."""
        if not isinstance(where, str | Path):
            return cls(where.share())
        if str(where).startswith(("postgresql://", "postgres://")):
            from labelsync.state_postgres import open_postgres

            return open_postgres(str(where))
        from labelsync.state_sqlite import SqliteBackend

        return cls.migrated(SqliteBackend.open(str(where)))

    @classmethod
    def migrated(cls, backend: Backend) -> State:
        """A state on a freshly opened backend, its schema brought up to date."""
        state = cls(backend)
        try:
            state._migrate()
        except BaseException:
            backend.close()
            raise
        return state

    def _migrate(self) -> None:
        """Every migration still to run, in order, in one transaction: a state is never
        left between two schema versions. The backend serialises concurrent starts."""
        with self.transaction() as tx:
            current = self._backend.schema_version(tx.db)
            self.schema_found = current
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"the state was written by a newer labelsync (schema {current}, "
                    f"this one knows {SCHEMA_VERSION}): upgrade labelsync"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in self._backend.migration(version, _MIGRATIONS[version]):
                    tx.db.execute(statement)
                if current:
                    log.info("state migrated from schema %d to %d", version, version + 1)
            if current != SCHEMA_VERSION:
                self._backend.set_schema_version(tx.db, SCHEMA_VERSION)

    def close(self) -> None:
        self._backend.close()

    def __repr__(self) -> str:
        return f"State({self.where!r})"

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._backend.errors(), self._backend.transaction() as db:
            yield Tx(db, self._backend.text)

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._backend.errors():
            return self._backend.rows(sql, tuple(params))

    def rows_of(self, table: str, size: int = 5000) -> tuple[list[str], Iterator[list[Any]]]:
        """Every row of a table in batches, in the order written (`state import`)."""
        if table not in TABLES:
            raise ValueError(f"not a state table: {table}")
        order = " ORDER BY rowid" if table == "lines" else ""  # the order lines were read
        with self._backend.errors():
            columns, batches = self._backend.stream(f"SELECT * FROM {table}{order}", size)

        # PostgreSQL's explicit rowid on `lines` is its own: SQLite's stays implicit.
        kept = [i for i, c in enumerate(columns) if c != "rowid"]

        def guarded() -> Iterator[list[Any]]:
            with self._backend.errors():
                for batch in batches:
                    yield (
                        batch
                        if len(kept) == len(columns)
                        else [[r[i] for i in kept] for r in batch]
                    )

        return [columns[i] for i in kept], guarded()

    def table_counts(self) -> dict[str, int]:
        """Rows in each table of the schema."""
        return {t: int(self._rows(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in TABLES}

    # -- which Label Studio project this state belongs to --------------------------------
    def bind(self, url: str, project_id: int) -> None:
        """Tie the state to its default project: a state is not moved between projects.

        The URL may change (a new host name, a proxy) without the project changing,
        so only the project id is binding; a URL change is logged. Insert-then-read,
        so two daemons binding one new PostgreSQL state at once agree on the winner.
        """
        with self.transaction() as tx:
            tx.db.execute(
                "INSERT INTO meta VALUES ('project_id', ?) ON CONFLICT (key) DO NOTHING",
                (str(project_id),),
            )
            bound = tx.get_meta("project_id")
            if bound != str(project_id):
                raise StateError(
                    f"this {self._backend.what} belongs to project {bound}, not {project_id}: "
                    f"set {self._backend.setting} to a {self._backend.what.split()[-1]} of its "
                    "own for each project"
                )
            previous = tx.get_meta("url")
            if previous is not None and previous != url:
                log.warning(
                    "Label Studio URL changed from %s to %s (same project %d)",
                    previous,
                    url,
                    project_id,
                )
            tx.set_meta("url", url)

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as tx:
            tx.set_meta(key, value)

    # -- reads -------------------------------------------------------------------------
    _FILE_COLUMNS = "path, size, mtime_ns, inode, status, reason, sha256, head"

    @staticmethod
    def _file(r: Any) -> FileRecord:
        return FileRecord(r[0], FileStat(r[1], r[2], r[3]), *r[4:])

    def files(self) -> dict[str, FileRecord]:
        return {r[0]: self._file(r) for r in self._rows(f"SELECT {self._FILE_COLUMNS} FROM files")}

    def files_for(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        found: dict[str, FileRecord] = {}
        for chunk in _chunks(list(paths)):
            marks = ",".join("?" * len(chunk))
            for r in self._rows(
                f"SELECT {self._FILE_COLUMNS} FROM files WHERE path IN ({marks})", chunk
            ):
                found[r[0]] = self._file(r)
        return found

    def file(self, path: str) -> FileRecord | None:
        return self.files_for([path]).get(path)

    def versions_of(
        self, project_id: int, thread_ids: Iterable[str]
    ) -> dict[str, list[VersionRecord]]:
        found: dict[str, list[VersionRecord]] = {}
        for chunk in _chunks(list(dict.fromkeys(thread_ids))):
            asked = {self._backend.text(t): t for t in chunk}  # keyed as the caller asked
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                "SELECT project_id, thread_id, version, sync_key, task_id, source_file,"
                " feedback_key, retired_at IS NOT NULL FROM versions"
                f" WHERE project_id = ? AND thread_id IN ({marks}) ORDER BY version",
                [project_id, *chunk],
            )
            for row in rows:
                found.setdefault(asked.get(row[1], row[1]), []).append(
                    VersionRecord(*row[:7], retired=bool(row[7]))  # type: ignore[misc]
                )
        return found

    def superseded(self, project_id: int) -> list[VersionRecord]:
        """Versions with a newer one, neither retired nor kept yet: what is left to tidy."""
        rows = self._rows(
            "SELECT v.project_id, v.thread_id, v.version, v.sync_key, v.task_id, v.source_file,"
            " v.feedback_key FROM versions v WHERE v.project_id = ? AND v.retired_at IS NULL"
            " AND v.kept = 0 AND v.task_id > 0 AND EXISTS (SELECT 1 FROM versions n"
            " WHERE n.project_id = v.project_id AND n.thread_id = v.thread_id"
            " AND n.version > v.version)",
            (project_id,),
        )
        return [VersionRecord(*row) for row in rows]

    def highest_task_id(self, project_id: int) -> int:
        rows = self._rows("SELECT MAX(task_id) FROM versions WHERE project_id = ?", (project_id,))
        return int(rows[0][0] or 0)

    def conversations_of(self, path: str) -> dict[str, ConversationRecord]:
        rows = self._rows(
            "SELECT path, key, thread_id, status, reason, position, sync_key, project_id"
            " FROM conversations WHERE path = ?",
            (path,),
        )
        return {r[1]: ConversationRecord(*r) for r in rows}

    def sent_since(self, project_id: int, since: float) -> int:
        """Tasks created in a project since a time: what a cap per hour or day counts."""
        rows = self._rows(
            "SELECT COUNT(*) FROM versions WHERE project_id = ? AND synced_at >= ? AND task_id > 0",
            (project_id, since),
        )
        return int(rows[0][0])

    def with_status(self, status: str) -> list[tuple[str, str]]:
        """(file, conversation key) of every conversation last decided with this status."""
        return [
            (r[0], r[1])
            for r in self._rows("SELECT path, key FROM conversations WHERE status = ?", (status,))
        ]

    def pending(self) -> list[Pending]:
        rows = self._rows(
            "SELECT project_id, sync_key, thread_id, version, source_file, sent_at FROM outbox"
        )
        return [Pending(*row) for row in rows]

    def log_position(self, head: str) -> LogPosition | None:
        rows = self._rows(
            "SELECT head, path, read_offset, read_lines, tail_check FROM logs WHERE head = ?",
            (head,),
        )
        return LogPosition(*rows[0]) if rows else None

    def lines_of(self, thread_ids: Iterable[str]) -> dict[str, list[LineRef]]:
        found: dict[str, list[LineRef]] = {}
        for chunk in _chunks(list(dict.fromkeys(thread_ids))):
            asked = {self._backend.text(t): t for t in chunk}
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                "SELECT thread_id, path, head, line_offset, length, line_no FROM lines"
                f" WHERE thread_id IN ({marks}) ORDER BY rowid",
                chunk,
            )
            for row in rows:
                found.setdefault(asked.get(row[0], row[0]), []).append(LineRef(*row))
        return found

    def tailed(self, *, open_only: bool = True, path: str | None = None) -> list[Tailed]:
        sql = "SELECT thread_id, path, last_at, ended, open FROM tailed WHERE 1=1"
        params: list[Any] = []
        if open_only:
            sql += " AND open = 1"
        if path is not None:
            sql += " AND path = ?"
            params.append(path)
        return [Tailed(r[0], r[1], r[2], bool(r[3]), bool(r[4])) for r in self._rows(sql, params)]

    def counts(self) -> dict[str, int]:
        counts = {
            "conversations": self._rows("SELECT COUNT(DISTINCT thread_id) FROM versions")[0][0],
            "tasks": self._rows("SELECT COUNT(*) FROM versions")[0][0],
            "retired": self._rows("SELECT COUNT(*) FROM versions WHERE retired_at IS NOT NULL")[0][
                0
            ],
            "outbox": self._rows("SELECT COUNT(*) FROM outbox")[0][0],
            "files": self._rows("SELECT COUNT(*) FROM files")[0][0],
        }
        for status, n in self._rows("SELECT status, COUNT(*) FROM conversations GROUP BY status"):
            counts[status] = n
        counts["quarantined"] = (
            counts.get("quarantined", 0)
            + self._rows("SELECT COUNT(*) FROM files WHERE status = 'quarantined'")[0][0]
        )
        counts["open_tailed"] = self._rows("SELECT COUNT(*) FROM tailed WHERE open = 1")[0][0]
        for rule, n in self._rows(
            "SELECT rule, COUNT(*) FROM conversations WHERE rule IS NOT NULL GROUP BY rule"
        ):
            counts[f"rule:{rule}"] = n
        for project, n in self._rows(
            "SELECT project_id, COUNT(*) FROM versions WHERE retired_at IS NULL GROUP BY project_id"
        ):
            counts[f"project:{project}"] = n
        return counts

    def problems(self, status: str, limit: int | None = None) -> list[tuple[str, str, str]]:
        """(file, position in it, reason) of conversations and whole files in a status."""
        rows: list[tuple[str, str, str]] = [
            (r[0], r[1] or "", r[2] or "")
            for r in self._rows(
                "SELECT path, position, reason FROM conversations WHERE status = ?"
                " ORDER BY path, position",
                (status,),
            )
        ]
        file_statuses = _FILE_PROBLEMS.get(status, ())
        if file_statuses:
            marks = ",".join("?" * len(file_statuses))
            rows += [
                (r[0], "", r[1] or "")
                for r in self._rows(
                    f"SELECT path, reason FROM files WHERE status IN ({marks})", file_statuses
                )
            ]
            rows.sort()
        return rows[:limit] if limit is not None else rows


# Which file statuses count as which problem, for `status` and the backfill.
_FILE_PROBLEMS = {"quarantined": ("quarantined", "unreadable"), "skipped": ("skipped",)}


class StateLock:
    """One labelsync per state directory: two writers would each send the same version."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot use the state directory {self._path.parent}: {exc.strerror} "
                "(LABELSYNC_STATE_DIR)"
            ) from None
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
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(
            f"cannot create the state directory {directory}: {exc.strerror} (LABELSYNC_STATE_DIR)"
        ) from None
    lock = StateLock(directory)
    lock.acquire()
    try:
        return State.open(directory / STATE_FILE), lock
    except BaseException:
        lock.release()
        raise


class Releasable(Protocol):
    def release(self) -> None: ...


class NoLock:
    """PostgreSQL has no lock per state: several daemons will share one state there,
    each claiming its conversations (row locks) instead of owning the whole state."""

    def release(self) -> None:
        pass


def open_state(
    state_dir: Path,
    url: str | None = None,
    *,
    password: str | None = None,
    pool_size: int = 4,
    timeout_s: float = 10.0,
) -> tuple[State, Releasable]:
    """The configured state, migrated: PostgreSQL when a URL is given (password from
    the URL, else `password`, else libpq's .pgpass), else SQLite in `state_dir`."""
    if url is None:
        return open_state_dir(state_dir)
    from labelsync.state_postgres import open_postgres

    state = open_postgres(url, password=password, pool_size=pool_size, timeout_s=timeout_s)
    return state, NoLock()
