"""labelsync's own memory, so it never asks Label Studio "did I send this?" per file.

Tables (schema version 3):
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
  arrived since it was last decided. No message text is stored;
- claims, daemons: what several daemons sharing one PostgreSQL state need (schema 3):
  which daemon holds which conversation for now (a lease), and who is running.

Shared and host-local rows (schema 3): versions, the outbox, claims and meta
are one for every daemon of a state. files, conversations, logs, lines and
tailed describe files on one host's disk, so they carry a `site`: the daemon's
name (LABELSYNC_DAEMON_NAME, the host name by default) on PostgreSQL, '' on
SQLite (one host per state directory). Two hosts with the same paths keep their
own rows; two processes of one host (a backfill beside the daemon) share them.

Every write is one explicit transaction (`with state.transaction() as tx`);
WAL keeps `labelsync status` readable while the daemon writes.

Two backends hold these tables: SQLite, one file per state directory (the
default, state_sqlite.py), and PostgreSQL (LABELSYNC_STATE_URL, state_postgres.py).
The SQL below is written once, in SQLite's dialect; PostgreSQL's backend translates
it (placeholders, column types) in one place. `State` and `Tx` are the same for both.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from labelsync.files import FileStat

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
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


# Version 2 -> 3: several daemons on one state (PostgreSQL). Host-local rows get the
# site of the daemon that wrote them; the outbox an owner and a lease, so a row left
# by a daemon that died is resolved by another once the lease is over; claims say
# which daemon sends which conversation now; daemons, who runs and how far it is.
# A line is indexed once (a retried transaction cannot add it twice).
_V3 = """
ALTER TABLE files RENAME TO files_v2;
CREATE TABLE files (
    site TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',
    head TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (site, path)
);
INSERT INTO files (path, size, mtime_ns, inode, sha256, head, status, reason, updated_at)
    SELECT path, size, mtime_ns, inode, sha256, head, status, reason, updated_at FROM files_v2;
DROP TABLE files_v2;
DROP INDEX conversations_status;
ALTER TABLE conversations RENAME TO conversations_v2;
CREATE TABLE conversations (
    site TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    key TEXT NOT NULL,
    thread_id TEXT,
    position TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT,
    sync_key TEXT,
    project_id INTEGER,
    rule TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (site, path, key)
);
CREATE INDEX conversations_status ON conversations (status) WHERE status != 'synced';
INSERT INTO conversations (path, key, thread_id, position, status, reason, sync_key,
                           project_id, rule, updated_at)
    SELECT path, key, thread_id, position, status, reason, sync_key, project_id, rule, updated_at
    FROM conversations_v2;
DROP TABLE conversations_v2;
ALTER TABLE logs RENAME TO logs_v2;
CREATE TABLE logs (
    site TEXT NOT NULL DEFAULT '',
    head TEXT NOT NULL,
    path TEXT NOT NULL,
    read_offset INTEGER NOT NULL,
    read_lines INTEGER NOT NULL,
    tail_check TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (site, head)
);
INSERT INTO logs (head, path, read_offset, read_lines, tail_check, updated_at)
    SELECT head, path, read_offset, read_lines, tail_check, updated_at FROM logs_v2;
DROP TABLE logs_v2;
DROP INDEX tailed_open;
ALTER TABLE tailed RENAME TO tailed_v2;
CREATE TABLE tailed (
    site TEXT NOT NULL DEFAULT '',
    thread_id TEXT NOT NULL,
    path TEXT NOT NULL,
    last_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    open INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (site, thread_id)
);
CREATE INDEX tailed_open ON tailed (site) WHERE open = 1;
INSERT INTO tailed (thread_id, path, last_at, ended, open)
    SELECT thread_id, path, last_at, ended, open FROM tailed_v2;
DROP TABLE tailed_v2;
ALTER TABLE lines ADD COLUMN site TEXT NOT NULL DEFAULT '';
DELETE FROM lines WHERE rowid NOT IN
    (SELECT MIN(rowid) FROM lines GROUP BY thread_id, head, line_offset);
DROP INDEX lines_thread;
DROP INDEX lines_file;
CREATE INDEX lines_thread ON lines (site, thread_id);
CREATE INDEX lines_file ON lines (site, head);
CREATE UNIQUE INDEX lines_once ON lines (site, thread_id, head, line_offset);
ALTER TABLE outbox ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN expires_at REAL NOT NULL DEFAULT 0;
CREATE INDEX outbox_thread ON outbox (project_id, thread_id);
CREATE TABLE claims (
    project_id INTEGER NOT NULL,
    thread_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (project_id, thread_id)
);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE daemons (
    owner TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    pid INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    backlog INTEGER NOT NULL DEFAULT 0,
    last_sync REAL,
    last_error TEXT,
    watch_dir TEXT,
    totals TEXT NOT NULL DEFAULT '{}'
);
DELETE FROM meta WHERE key = 'daemon'
"""

# Index i upgrades the schema from version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)


# Every table of the schema, in the order `labelsync state import` copies them.
TABLES = ("meta", "files", "conversations", "versions", "outbox", "logs", "lines", "tailed")
# Tables of running daemons (leases, heartbeats): never copied, they say nothing once
# the daemons that wrote them are gone.
TRANSIENT = ("claims", "daemons")
# Tables whose rows describe one host's files: keyed by site as well.
SITE_TABLES = ("files", "conversations", "logs", "lines", "tailed")


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
    # Whether several daemons may use it at once (claims and leases are real).
    shared: bool
    now_sql: str  # the server's clock in seconds since 1970, as an SQL expression

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
    owner: str = ""  # the daemon that put it (Identity.owner); '' before schema 3
    expires_at: float = 0.0  # its lease, by the database's clock: resolvable by others after


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


# The database's clock in seconds since 1970, as SQL (PostgreSQL's backend has its own).
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class Identity:
    """Who this labelsync process is, among the daemons sharing a state.

    `name`: LABELSYNC_DAEMON_NAME, the host name by default: the site of its host-local
    rows, and what `status` shows. `owner`: name, pid and a random part, so a process
    restarted with the same pid (a container's pid 1) is not taken for the one that
    died: claims and outbox rows are this process's only.
    """

    name: str
    pid: int
    nonce: str

    @property
    def owner(self) -> str:
        return f"{self.name}:{self.pid}:{self.nonce}"

    @classmethod
    def here(cls, name: str | None = None) -> Identity:
        return cls(name or socket.gethostname() or "localhost", os.getpid(), secrets.token_hex(3))


@dataclass(frozen=True)
class DaemonRecord:
    """One daemon as `labelsync status` lists it."""

    owner: str
    name: str
    pid: int
    status: str  # running | stopped | waiting
    started_at: float
    seen_at: float  # by the database's clock
    backlog: int = 0
    last_sync: float | None = None
    last_error: str | None = None
    watch_dir: str | None = None
    totals: dict[str, int] = field(default_factory=dict)


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
    """The writes of one transaction.

    `site`: whose host-local rows these are (files, conversations, logs, lines,
    tailed). `now`: the database's clock as SQL, for leases: every daemon compares
    expiries with one clock, whatever its own says.
    """

    def __init__(
        self,
        db: Db,
        stored: Callable[[str], str] = lambda text: text,
        *,
        site: str = "",
        now: str = _SQLITE_NOW,
        shared: bool = False,
    ) -> None:
        self.db = db
        self._stored = stored  # a text as the backend stores it (PostgreSQL: no NUL)
        self.site = site
        self._now = now
        self.shared = shared

    def put_files(self, rows: Iterable[FileRecord]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO files (site, path, size, mtime_ns, inode, sha256, head, status, reason,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (site, path) DO UPDATE SET size=excluded.size,"
            " mtime_ns=excluded.mtime_ns, inode=excluded.inode, sha256=excluded.sha256,"
            " head=excluded.head, status=excluded.status, reason=excluded.reason,"
            " updated_at=excluded.updated_at",
            [
                (
                    self.site,
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
            "INSERT INTO conversations (site, path, key, thread_id, position, status, reason,"
            " sync_key, project_id, rule, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (site, path, key) DO UPDATE SET thread_id=excluded.thread_id,"
            " position=excluded.position, status=excluded.status, reason=excluded.reason,"
            " sync_key=excluded.sync_key, project_id=excluded.project_id, rule=excluded.rule,"
            " updated_at=excluded.updated_at",
            [
                (
                    self.site,
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
        self.keep_only_conversations_of({path: list(keys)})

    def keep_only_conversations_of(self, files: dict[str, list[str]]) -> None:
        """The same for many files at once (a chunk's): one query per 500 files, not one
        per file, which on PostgreSQL is a round trip each."""
        stale: list[tuple[str, str, str]] = []
        for chunk in _chunks(list(files)):
            marks = ",".join("?" * len(chunk))
            keep = {self._stored(path): {self._stored(k) for k in files[path]} for path in chunk}
            for path, key in self.db.execute(
                f"SELECT path, key FROM conversations WHERE site = ? AND path IN ({marks})",
                (self.site, *chunk),
            ):
                if key not in keep.get(path, ()):
                    stale.append((self.site, path, key))
        self.db.executemany(
            "DELETE FROM conversations WHERE site = ? AND path = ? AND key = ?", stale
        )

    def add_versions(self, rows: Iterable[VersionRecord]) -> None:
        """Versions sent or learnt; one already known is kept as it was (repeatable)."""
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

    def retire(self, project_id: int, sync_keys: Iterable[str]) -> int:
        """Mark versions taken out of the project; returns how many were not already."""
        now = time.time()
        changed = 0
        for key in sync_keys:
            cursor = self.db.execute(
                "UPDATE versions SET retired_at = ? WHERE project_id = ? AND sync_key = ?"
                " AND retired_at IS NULL",
                (now, project_id, key),
            )
            changed += max(0, _rowcount(cursor))
        return changed

    def keep(self, project_id: int, sync_keys: Iterable[str]) -> None:
        self.db.executemany(
            "UPDATE versions SET kept = 1 WHERE project_id = ? AND sync_key = ?",
            [(project_id, k) for k in sync_keys],
        )

    # -- the outbox: imports of unknown outcome, each with its owner's lease ---------------
    def put_outbox(self, rows: Iterable[Pending], lease_s: float = 0.0) -> None:
        """Versions about to be imported. The owner holds each row for `lease_s` (renewed
        while it lives); after that any daemon may resolve it."""
        self.db.executemany(
            "INSERT INTO outbox (project_id, sync_key, thread_id, version, source_file, sent_at,"
            f" owner, expires_at) VALUES (?,?,?,?,?,?,?,{self._now} + ?)"
            " ON CONFLICT (project_id, sync_key) DO UPDATE SET version=excluded.version,"
            " thread_id=excluded.thread_id, sent_at=excluded.sent_at, owner=excluded.owner,"
            " expires_at=excluded.expires_at",
            [
                (
                    p.project_id,
                    p.sync_key,
                    _t(p.thread_id),
                    p.version,
                    _t(p.source_file),
                    p.sent_at,
                    p.owner,
                    float(lease_s),
                )
                for p in rows
            ],
        )

    def drop_outbox(self, rows: Iterable[tuple[int, str]], owner: str | None = None) -> int:
        """Rows whose outcome is recorded. With `owner`, only that owner's rows: a row
        another daemon put since (the same content, sent again under its claim) stays.
        Returns how many rows went."""
        if owner is None:
            before = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self.db.executemany(
                "DELETE FROM outbox WHERE project_id = ? AND sync_key = ?", list(rows)
            )
            return int(before) - int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        by_project: dict[int, list[str]] = {}
        for project_id, key in rows:
            by_project.setdefault(project_id, []).append(key)
        return sum(
            len(self.drop_own_outbox(project_id, keys, owner))
            for project_id, keys in by_project.items()
        )

    def drop_own_outbox(self, project_id: int, sync_keys: Sequence[str], owner: str) -> set[str]:
        """Take `owner`'s rows with these keys out of the outbox; returns the keys that
        were there (tried again after a COMMIT of unknown outcome: none)."""
        dropped: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(sync_keys))):
            marks = ",".join("?" * len(chunk))
            where = f"WHERE project_id = ? AND owner = ? AND sync_key IN ({marks})"
            params = (project_id, owner, *chunk)
            if self.shared:
                # One statement: what another daemon deletes at the same moment is not
                # counted here too.
                found = self.db.execute(
                    f"DELETE FROM outbox {where} RETURNING sync_key", params
                ).fetchall()
            else:  # one writer (BEGIN IMMEDIATE); RETURNING needs SQLite 3.35
                found = self.db.execute(f"SELECT sync_key FROM outbox {where}", params).fetchall()
                self.db.execute(f"DELETE FROM outbox {where}", params)
            dropped.update(r[0] for r in found)
        return dropped

    def outbox_in_flight(self, project_id: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE project_id = ? LIMIT 1", (project_id,)
        ).fetchone()
        return row is not None

    # -- claims: which daemon sends which conversation now ----------------------------------
    def claim(
        self, project_id: int, thread_ids: Iterable[str], owner: str, lease_s: float
    ) -> set[str]:
        """Take (or keep) the conversations no other daemon holds; returns those taken.

        One statement per batch: an insert, or an update of a claim that is this
        owner's or whose lease is over, by the database's clock. A claim another
        daemon holds is left alone without waiting for it. Ids are taken in one
        order, so two daemons claiming overlapping batches cannot deadlock.
        On SQLite (one daemon per state directory) every claim is granted.
        """
        asked = {self._stored(t): t for t in thread_ids}
        if not self.shared:
            return set(asked.values())
        taken: set[str] = set()
        for chunk in _chunks(sorted(asked), 200):
            values = ",".join(f"(?, ?, ?, {self._now} + ?)" for _ in chunk)
            params: list[Any] = []
            for thread in chunk:
                params += [project_id, thread, owner, float(lease_s)]
            rows = self.db.execute(
                f"INSERT INTO claims (project_id, thread_id, owner, expires_at) VALUES {values}"
                " ON CONFLICT (project_id, thread_id) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at"
                f" WHERE claims.owner = excluded.owner OR claims.expires_at < {self._now}"
                " RETURNING thread_id",
                params,
            ).fetchall()
            taken.update(asked.get(r[0], r[0]) for r in rows)
        return taken

    def holding(
        self, project_id: int, thread_ids: Iterable[str], owner: str, for_s: float
    ) -> set[str]:
        """Of these conversations, those whose claim `owner` holds for at least `for_s`
        more seconds: what it may still send (checked in the outbox's transaction)."""
        asked = {self._stored(t): t for t in thread_ids}
        if not self.shared:
            return set(asked.values())
        held: set[str] = set()
        for chunk in _chunks(list(asked)):
            marks = ",".join("?" * len(chunk))
            # FOR UPDATE: a daemon taking one of these claims once it runs out waits for
            # this transaction, and then sees the outbox rows it wrote.
            rows = self.db.execute(
                f"SELECT thread_id FROM claims WHERE project_id = ? AND owner = ?"
                f" AND expires_at > {self._now} + ? AND thread_id IN ({marks}) FOR UPDATE",
                (project_id, owner, float(for_s), *chunk),
            ).fetchall()
            held.update(asked.get(r[0], r[0]) for r in rows)
        return held

    def release(self, project_id: int, thread_ids: Iterable[str], owner: str) -> None:
        if not self.shared:
            return
        self.db.executemany(
            "DELETE FROM claims WHERE project_id = ? AND thread_id = ? AND owner = ?",
            [(project_id, _t(t), owner) for t in dict.fromkeys(thread_ids)],
        )

    def renew(self, owner: str, lease_s: float) -> None:
        """Everything `owner` holds (claims, outbox rows) for `lease_s` more from now."""
        for table in ("claims", "outbox"):
            self.db.execute(
                f"UPDATE {table} SET expires_at = {self._now} + ? WHERE owner = ?",
                (float(lease_s), owner),
            )

    # -- logs --------------------------------------------------------------------------
    def add_lines(self, refs: Iterable[LineRef]) -> None:
        """Lines of logs and the conversation each belongs to; a line already indexed
        (a transaction tried again after an unknown outcome) is not added twice."""
        self.db.executemany(
            "INSERT INTO lines (site, thread_id, path, head, line_offset, length, line_no)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT (site, thread_id, head, line_offset) DO NOTHING",
            [(self.site, r.thread_id, r.path, r.head, r.offset, r.length, r.line_no) for r in refs],
        )

    def replace_lines(self, thread_id: str, refs: Iterable[LineRef]) -> None:
        """A line that holds a whole conversation replaces what was known of it."""
        self.db.execute(
            "DELETE FROM lines WHERE site = ? AND thread_id = ?", (self.site, thread_id)
        )
        self.add_lines(refs)

    def drop_lines_of(self, head: str) -> None:
        """A log was rewritten in place (same first line, other lines after it): what was
        known of its lines no longer says anything."""
        self.db.execute("DELETE FROM lines WHERE site = ? AND head = ?", (self.site, head))

    def put_logs(self, rows: Iterable[LogPosition]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO logs (site, head, path, read_offset, read_lines, tail_check, updated_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT (site, head) DO UPDATE SET"
            " path=excluded.path, read_offset=excluded.read_offset,"
            " read_lines=excluded.read_lines, tail_check=excluded.tail_check,"
            " updated_at=excluded.updated_at",
            [(self.site, r.head, _t(r.path), r.offset, r.lines, r.check, now) for r in rows],
        )

    def put_tailed(self, rows: Iterable[Tailed]) -> None:
        self.db.executemany(
            "INSERT INTO tailed (site, thread_id, path, last_at, ended, open)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (site, thread_id) DO UPDATE SET"
            " path=excluded.path, last_at=excluded.last_at, ended=excluded.ended,"
            " open=excluded.open",
            [(self.site, t.thread_id, t.path, t.last_at, int(t.ended), int(t.open)) for t in rows],
        )

    def reopen_tailed(self, thread_ids: Iterable[str]) -> None:
        """Decide these conversations of logs again (after Label Studio rejected them)."""
        self.db.executemany(
            "UPDATE tailed SET open = 1 WHERE site = ? AND thread_id = ?",
            [(self.site, t) for t in thread_ids],
        )

    def reopen_all_tailed(self) -> None:
        """Decide every conversation of logs again (`backfill --recheck`)."""
        self.db.execute("UPDATE tailed SET open = 1 WHERE site = ?", (self.site,))

    def close_tailed(self, thread_ids: Iterable[str]) -> None:
        self.db.executemany(
            "UPDATE tailed SET open = 0 WHERE site = ? AND thread_id = ?",
            [(self.site, t) for t in thread_ids],
        )

    def forget_file(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE site = ? AND path = ?", (self.site, path))
        self.db.execute("DELETE FROM conversations WHERE site = ? AND path = ?", (self.site, path))

    # -- meta --------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def get_meta(self, key: str) -> str | None:
        """Read inside this transaction (what it wrote so far included)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def add_to_meta(self, key: str, change: int) -> None:
        """An integer in meta moved by `change` in one statement: two daemons adding at
        once both count. Nothing happens while the key is not set."""
        if change:
            self.db.execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + ? AS TEXT) WHERE key = ?",
                (int(change), key),
            )

    def raise_meta(self, key: str, value: int) -> None:
        """An integer in meta that only grows (the highest task id seen)."""
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            " WHERE CAST(meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
            (key, str(int(value))),
        )

    def set_meta_if(self, key: str, value: str, expected: str | None) -> bool:
        """Set `key` only if it still holds `expected` (None: not set): False if another
        daemon changed it since it was read."""
        if expected is None:
            cursor = self.db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value)
            )
        else:
            cursor = self.db.execute(
                "UPDATE meta SET value = ? WHERE key = ? AND value = ?", (value, key, expected)
            )
        return _rowcount(cursor) > 0

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows as another state holds them (`labelsync state import`): no key is merged.

        Host-local rows of a single-host state (site '') become this daemon's: the
        import runs on the host whose files they describe."""
        if table not in TABLES or not all(c.isidentifier() for c in columns):
            raise ValueError(f"not a state table or column: {table} {columns}")
        at = columns.index("site") if table in SITE_TABLES and "site" in columns else None

        def converted(row: Sequence[Any]) -> tuple[Any, ...]:
            values = [_t(v) if isinstance(v, str) else v for v in row]
            if at is not None and not values[at]:
                values[at] = self.site
            return tuple(values)

        self.db.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
            [converted(row) for row in rows],
        )


def _rowcount(cursor: Any) -> int:
    count = getattr(cursor, "rowcount", -1)
    return int(count) if isinstance(count, int) else -1


class State:
    def __init__(self, backend: Backend, identity: Identity | None = None) -> None:
        self._backend = backend
        self.schema_found = SCHEMA_VERSION  # the schema it had when opened (before migrating)
        self.identity = identity or Identity.here()
        # Several daemons may share it (PostgreSQL): claims and leases are real. SQLite
        # is one daemon's (the directory's lock): every claim is granted, nothing waits.
        self.shared = backend.shared
        self.site = self.identity.name if self.shared else ""
        self._now = backend.now_sql

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
    def open(cls, where: Path | str | Backend, identity: Identity | None = None) -> State:
        """A SQLite file, a PostgreSQL URL (password in it, or from libpq's .pgpass),
        or an open state's `path` (another thread's own handle on the same state)."""
        if not isinstance(where, str | Path):
            return cls(where.share(), identity)
        if str(where).startswith(("postgresql://", "postgres://")):
            from labelsync.state_postgres import open_postgres

            return open_postgres(str(where), identity=identity)
        from labelsync.state_sqlite import SqliteBackend

        return cls.migrated(SqliteBackend.open(str(where)), identity)

    def share(self) -> State:
        """Another thread's own handle on this state, as the same daemon (its site)."""
        return State(self._backend.share(), self.identity)

    @classmethod
    def migrated(cls, backend: Backend, identity: Identity | None = None) -> State:
        """A state on a freshly opened backend, its schema brought up to date."""
        state = cls(backend, identity)
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
            if 0 < current < 3 and self.site:
                # A PostgreSQL state before schema 3 had one daemon (the previous release
                # said so): its host-local rows are those of the host that upgrades it.
                for table in SITE_TABLES:
                    tx.db.execute(f"UPDATE {table} SET site = ? WHERE site = ''", (self.site,))
                log.info("file records of the state are daemon %s's", self.site)
            if current != SCHEMA_VERSION:
                self._backend.set_schema_version(tx.db, SCHEMA_VERSION)

    def close(self) -> None:
        self._backend.close()

    def __repr__(self) -> str:
        return f"State({self.where!r})"

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._backend.errors(), self._backend.transaction() as db:
            yield Tx(db, self._backend.text, site=self.site, now=self._now, shared=self.shared)

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
        """Every file this daemon's host has recorded (its site)."""
        return {
            r[0]: self._file(r)
            for r in self._rows(
                f"SELECT {self._FILE_COLUMNS} FROM files WHERE site = ?", (self.site,)
            )
        }

    def files_for(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        found: dict[str, FileRecord] = {}
        for chunk in _chunks(list(paths)):
            marks = ",".join("?" * len(chunk))
            for r in self._rows(
                f"SELECT {self._FILE_COLUMNS} FROM files WHERE site = ? AND path IN ({marks})",
                [self.site, *chunk],
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
            " FROM conversations WHERE site = ? AND path = ?",
            (self.site, path),
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
        """(file, conversation key) of every conversation of this host last decided with
        this status."""
        return [
            (r[0], r[1])
            for r in self._rows(
                "SELECT path, key FROM conversations WHERE site = ? AND status = ?",
                (self.site, status),
            )
        ]

    _PENDING = "SELECT project_id, sync_key, thread_id, version, source_file, sent_at, owner,"

    def pending(self) -> list[Pending]:
        """Every outbox row, whoever put it."""
        rows = self._rows(f"{self._PENDING} expires_at FROM outbox")
        return [Pending(*row) for row in rows]

    def resolvable(self) -> list[Pending]:
        """Outbox rows this daemon may resolve now: its own, and those whose owner's lease
        is over (it died, or lost the database). On SQLite, every row: the directory's
        lock says the daemon that put them is gone."""
        if not self.shared:
            return self.pending()
        rows = self._rows(
            f"{self._PENDING} expires_at FROM outbox WHERE owner = ? OR expires_at < {self._now}",
            (self.identity.owner,),
        )
        return [Pending(*row) for row in rows]

    def outbox_of(self, project_id: int, thread_ids: Iterable[str]) -> list[tuple[Pending, bool]]:
        """Outbox rows of these conversations, each with whether its lease still runs."""
        found: list[tuple[Pending, bool]] = []
        for chunk in _chunks(list(dict.fromkeys(thread_ids))):
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"{self._PENDING} expires_at, expires_at >= {self._now} FROM outbox"
                f" WHERE project_id = ? AND thread_id IN ({marks})",
                [project_id, *chunk],
            )
            found += [(Pending(*row[:8]), bool(row[8])) for row in rows]
        return found

    def claim(self, project_id: int, thread_ids: Iterable[str], lease_s: float) -> set[str]:
        """Claim conversations for this daemon (Tx.claim), in a transaction of its own."""
        ids = list(thread_ids)
        if not self.shared:
            return set(ids)
        with self.transaction() as tx:
            return tx.claim(project_id, ids, self.identity.owner, lease_s)

    def renew(self, lease_s: float) -> None:
        if self.shared:
            with self.transaction() as tx:
                tx.renew(self.identity.owner, lease_s)

    def log_position(self, head: str) -> LogPosition | None:
        rows = self._rows(
            "SELECT head, path, read_offset, read_lines, tail_check FROM logs"
            " WHERE site = ? AND head = ?",
            (self.site, head),
        )
        return LogPosition(*rows[0]) if rows else None

    def lines_of(self, thread_ids: Iterable[str]) -> dict[str, list[LineRef]]:
        found: dict[str, list[LineRef]] = {}
        for chunk in _chunks(list(dict.fromkeys(thread_ids))):
            asked = {self._backend.text(t): t for t in chunk}
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                "SELECT thread_id, path, head, line_offset, length, line_no FROM lines"
                f" WHERE site = ? AND thread_id IN ({marks}) ORDER BY rowid",
                [self.site, *chunk],
            )
            for row in rows:
                found.setdefault(asked.get(row[0], row[0]), []).append(LineRef(*row))
        return found

    def tailed(self, *, open_only: bool = True, path: str | None = None) -> list[Tailed]:
        sql = "SELECT thread_id, path, last_at, ended, open FROM tailed WHERE site = ?"
        params: list[Any] = [self.site]
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

    def problems(
        self, status: str, limit: int | None = None, *, every_site: bool = False
    ) -> list[tuple[str, str, str]]:
        """(file, position in it, reason) of conversations and whole files in a status:
        this host's, or with `every_site` every daemon's (a site's files as `site:path`
        where there are several)."""
        where, params = ("", []) if every_site else (" AND site = ?", [self.site])
        several = every_site and len(self.sites()) > 1

        def shown(site: str, path: str) -> str:
            return f"{site}:{path}" if several and site else path

        rows: list[tuple[str, str, str]] = [
            (shown(r[3], r[0]), r[1] or "", r[2] or "")
            for r in self._rows(
                "SELECT path, position, reason, site FROM conversations WHERE status = ?"
                f"{where} ORDER BY path, position",
                [status, *params],
            )
        ]
        file_statuses = _FILE_PROBLEMS.get(status, ())
        if file_statuses:
            marks = ",".join("?" * len(file_statuses))
            rows += [
                (shown(r[2], r[0]), "", r[1] or "")
                for r in self._rows(
                    f"SELECT path, reason, site FROM files WHERE status IN ({marks}){where}",
                    [*file_statuses, *params],
                )
            ]
        rows.sort()
        return rows[:limit] if limit is not None else rows

    def sites(self) -> list[str]:
        """The daemons (by name) whose files this state has records of."""
        return [r[0] for r in self._rows("SELECT DISTINCT site FROM files ORDER BY site")]

    # -- the daemons sharing this state ------------------------------------------------
    def publish(self, record: DaemonRecord) -> None:
        """This daemon's heartbeat, backlog and totals (its own row; `seen_at` is set by
        the database's clock). Rows of daemons not seen for a week are dropped."""
        with self.transaction() as tx:
            tx.db.execute(
                "INSERT INTO daemons (owner, name, pid, status, started_at, seen_at, backlog,"
                f" last_sync, last_error, watch_dir, totals) VALUES (?,?,?,?,?,{self._now},"
                "?,?,?,?,?) ON CONFLICT (owner) DO UPDATE SET status=excluded.status,"
                " seen_at=excluded.seen_at, backlog=excluded.backlog,"
                " last_sync=excluded.last_sync, last_error=excluded.last_error,"
                " watch_dir=excluded.watch_dir, totals=excluded.totals",
                (
                    record.owner,
                    _t(record.name),
                    record.pid,
                    record.status,
                    record.started_at,
                    record.backlog,
                    record.last_sync,
                    _t(record.last_error),
                    _t(record.watch_dir),
                    json.dumps(record.totals),
                ),
            )
            tx.db.execute(f"DELETE FROM daemons WHERE seen_at < {self._now} - 604800")

    def daemons(self, within_s: float = 86400.0) -> list[tuple[DaemonRecord, float]]:
        """Daemons seen in the last `within_s` seconds, most recent first, each with how
        long ago it was last seen (by the database's clock)."""
        rows = self._rows(
            "SELECT owner, name, pid, status, started_at, seen_at, backlog, last_sync,"
            f" last_error, watch_dir, totals, {self._now} - seen_at FROM daemons"
            f" WHERE seen_at >= {self._now} - ? ORDER BY seen_at DESC",
            (float(within_s),),
        )
        return [
            (
                replace(DaemonRecord(*row[:10]), totals=json.loads(row[10] or "{}")),
                max(0.0, float(row[11])),
            )
            for row in rows
        ]


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


def open_state_dir(directory: Path, identity: Identity | None = None) -> tuple[State, StateLock]:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(
            f"cannot create the state directory {directory}: {exc.strerror} (LABELSYNC_STATE_DIR)"
        ) from None
    lock = StateLock(directory)
    lock.acquire()
    try:
        return State.open(directory / STATE_FILE, identity), lock
    except BaseException:
        lock.release()
        raise


class Releasable(Protocol):
    def release(self) -> None: ...


class NoLock:
    """PostgreSQL has no lock per state: several daemons share one state there, each
    claiming the conversations it sends (the claims table) instead of owning the state."""

    def release(self) -> None:
        pass


def open_state(
    state_dir: Path,
    url: str | None = None,
    *,
    password: str | None = None,
    pool_size: int = 4,
    timeout_s: float = 10.0,
    identity: Identity | None = None,
) -> tuple[State, Releasable]:
    """The configured state, migrated: PostgreSQL when a URL is given (password from
    the URL, else `password`, else libpq's .pgpass), else SQLite in `state_dir`."""
    if url is None:
        return open_state_dir(state_dir, identity)
    from labelsync.state_postgres import open_postgres

    state = open_postgres(
        url, password=password, pool_size=pool_size, timeout_s=timeout_s, identity=identity
    )
    return state, NoLock()
