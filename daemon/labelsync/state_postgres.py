"""The PostgreSQL state (LABELSYNC_STATE_URL): the same tables, in a server several
daemons can share. psycopg 3 with a connection pool (the `postgres` extra).

What differs from SQLite lives here, and only here:
- SQL: the state's statements are written once, in SQLite's dialect, with `?`
  placeholders; `_sql` turns them into psycopg's `%s`. Migrations get BIGINT for
  INTEGER (ids, task ids, nanosecond times) and DOUBLE PRECISION for REAL (`_ddl`),
  plus `_AFTER`: what SQLite has implicitly (a rowid on `lines`, the order lines
  were read in) made explicit.
- Text: PostgreSQL stores no NUL character and psycopg encodes no lone surrogate;
  both become U+FFFD, on writes and lookups alike, so a lookup finds what was written.
- The schema version is the `schema_version` row of `meta` (SQLite: user_version),
  and migrating holds a transaction-level advisory lock, so daemons starting at once
  migrate one after the other.
- Failures: a server out of reach (restarting, network cut, pool exhausted) raises
  StateUnavailable (the engine waits and calls again); anything else StateError.

The password comes from the URL, else the secrets directory (passed in), else
libpq itself (.pgpass, PGPASSWORD). It is never in a message, log line or repr:
everything shows `PostgresTarget.shown`, the URL without it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from labelsync.state import Db, Identity, State, StateError, StateUnavailable, _t

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)
# While the server is away the pool warns at every try it makes to reconnect; the
# daemon already says, once per retry, that the state database is unavailable.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

SETTING = "LABELSYNC_STATE_URL"
SCHEMES = ("postgresql", "postgres")

# Serialises migrations of one database (any constant will do: "lbls").
_MIGRATION_LOCK = 0x6C626C73
# What libpq is given unless the URL says otherwise. Keepalives and a TCP user
# timeout turn a silently cut network into an error within about a minute, where
# the kernel's defaults would leave a query hanging for a quarter of an hour.
_DEFAULTS = {
    "application_name": "labelsync",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}
# A connection idle in the pool longer than this is checked (an empty query) before
# it is handed out: after a server restart the stale ones are replaced, not failed.
# Busy loops reuse connections within milliseconds and pay nothing for it.
_PING_AFTER_S = 1.0

# -- the dialect -------------------------------------------------------------------------
_TYPES = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"))
# Statements run after migration i (from schema i to i + 1), beyond the shared script.
_AFTER: dict[int, tuple[str, ...]] = {
    # SQLite's implicit rowid is the order a conversation's lines were read in (lines_of
    # sorts by it); PostgreSQL keeps no order, so it gets the column under the same name.
    1: ("ALTER TABLE lines ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY",),
}


@functools.lru_cache(maxsize=512)
def _sql(text: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled first)."""
    return text.replace("%", "%%").replace("?", "%s")


def _ddl(text: str) -> str:
    for pattern, replacement in _TYPES:
        text = pattern.sub(replacement, text)
    return text


def _text(value: Any) -> Any:
    if isinstance(value, str) and not (value.isascii() and "\x00" not in value):
        return (_t(value) or "").replace("\x00", "\ufffd")
    return value


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_text(p) for p in params)


# -- where the state is ------------------------------------------------------------------
class PostgresTarget:
    """A state database's address: `shown` (no password) for people, the rest for libpq."""

    def __init__(self, url: str, password: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise StateError(
                f"{SETTING} must start with postgresql://, got {parts.scheme or 'no'} scheme"
            )
        userinfo, at, hosts = parts.netloc.rpartition("@")
        user, colon, in_url = userinfo.partition(":")
        query = parse_qsl(parts.query, keep_blank_values=True)
        from_query = [v for k, v in query if k == "password"]
        netloc = f"{user}@{hosts}" if at and user else hosts
        rest = urlencode([(k, v) for k, v in query if k != "password"])
        self.shown = urlunsplit((parts.scheme, netloc, parts.path, rest, ""))
        # The URL's own password wins, as libpq would have it; then the secrets directory.
        self._password = (
            from_query[-1] if from_query else unquote(in_url) if colon else None
        ) or password
        self._given = {k for k, _ in query}

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"PostgresTarget({self.shown!r})"

    def connect_kwargs(self, timeout_s: float) -> dict[str, Any]:
        """What psycopg is given beside the URL; the URL's own parameters win."""
        defaults = {**_DEFAULTS, "connect_timeout": str(max(2, round(timeout_s)))}
        kwargs: dict[str, Any] = {k: v for k, v in defaults.items() if k not in self._given}
        kwargs["autocommit"] = True
        if self._password:
            kwargs["password"] = self._password
        return kwargs

    def scrub(self, text: str) -> str:
        """A driver's message as one line, the password out of it whatever happens."""
        line = " ".join(text.split())
        if self._password:
            line = line.replace(self._password, "***")
        return line


def open_postgres(
    url: str,
    *,
    password: str | None = None,
    pool_size: int = 4,
    timeout_s: float = 10.0,
    identity: Identity | None = None,
) -> State:
    """Connect, migrate, then start the pool. A server out of reach is StateUnavailable;
    a refusal (password, database, permissions) StateError; both name the setting."""
    target = PostgresTarget(url, password)
    try:
        import psycopg
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise StateError(
            f"{SETTING} needs the PostgreSQL driver: pip install 'labelsync[postgres]'"
        ) from None
    kwargs = target.connect_kwargs(timeout_s)
    try:
        # One connection first, for the migration and for a clear error: a pool that
        # cannot connect only says it timed out.
        first = psycopg.connect(target.shown, **kwargs)
    except psycopg.Error as exc:
        message = target.scrub(str(exc)).removeprefix("connection failed: ")
        refused = any(s in message for s in _REFUSALS)
        raise (StateError if refused else StateUnavailable)(
            f"cannot connect to the state database {target} ({message}): check {SETTING}"
            + ("" if refused else " and that PostgreSQL is running")
        ) from None
    # Closes it on failure.
    migrated = State.migrated(PostgresBackend(target, _Single(first)), identity)
    first.close()
    pool = ConnectionPool(
        target.shown,
        kwargs=kwargs,
        min_size=1,
        max_size=max(2, pool_size),
        timeout=timeout_s,
        name="labelsync-state",
        check=_check_if_idle,
        open=False,
        # The pool's own reconnection backs off (1, 2, 4, ... s) for up to 5 minutes:
        # after a 45 s network cut its next try came half a minute after the network was
        # back. Given up sooner, the daemon's next call starts a new try at once, so the
        # daemon's backoff (at most 30 s) decides when it is back.
        reconnect_timeout=max(2.0, timeout_s),
    )
    pool.open()
    state = State(PostgresBackend(target, pool, owner=True), migrated.identity)
    state.schema_found = migrated.schema_found
    return state


# What a server says when retrying cannot help: a person must change something.
_REFUSALS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "certificate",
    "invalid ",
)

# When each connection was last used (marked by PostgresBackend, not by the pool's
# `reset` hook: with one, the pool returns every connection through a worker thread,
# which halved lookups per second).
_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    if time.monotonic() - _used.get(conn, 0.0) > _PING_AFTER_S:
        conn.execute("")


class _Single:
    """One connection standing in for a pool while the state is migrated at start."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        yield self.conn

    def close(self) -> None:
        self.conn.close()


class _PgDb:
    """A psycopg connection as the state's SQL expects it (`?`, SQLite's dialect)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(_sql(sql), _params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [_params(row) for row in rows]
        if batch:
            with self.conn.cursor() as cursor:
                cursor.executemany(_sql(sql), batch)


class PostgresBackend:
    kind = "postgresql"
    setting = SETTING
    what = "state database"
    # Several daemons share it: claims and leases, compared with the server's clock.
    shared = True
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

    def __init__(
        self, target: PostgresTarget, pool: ConnectionPool[Any] | _Single, owner: bool = False
    ) -> None:
        self.target = target
        self._pool = pool
        self._owner = owner
        # The connection of this thread's open transaction: reads made inside it see its
        # writes, as they do on SQLite's single connection.
        self._local = threading.local()

    def __str__(self) -> str:
        return self.target.shown

    def __repr__(self) -> str:
        return f"PostgresBackend({self.target.shown!r})"

    @property
    def location(self) -> PostgresBackend:
        return self

    @contextmanager
    def errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:  # includes the pool's PoolTimeout
            self._drop_stale()
            raise StateUnavailable(
                f"state database {self.target} is unavailable "
                f"({self.target.scrub(str(exc)) or type(exc).__name__}; {SETTING})"
            ) from None
        except psycopg.Error as exc:
            raise StateError(
                f"state database {self.target}: {self.target.scrub(str(exc))} ({SETTING})"
            ) from None

    def _drop_stale(self) -> None:
        """After a lost connection the pool's idle ones are likely dead too (a server
        restart ends them all): test them now, so the next call gets a live one."""
        check = getattr(self._pool, "check", None)
        if check is not None and getattr(self._local, "conn", None) is None:
            with suppress(Exception):
                check()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self._pool.connection() as conn:
            try:
                yield conn
            finally:
                _used[conn] = time.monotonic()

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        with self._connection() as conn, conn.transaction():
            previous, self._local.conn = getattr(self._local, "conn", None), conn
            try:
                yield _PgDb(conn)
            finally:
                self._local.conn = previous

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_sql(sql), _params(params)).fetchall()

    def text(self, value: str) -> str:
        return str(_text(value))

    def stream(self, sql: str, size: int) -> tuple[list[str], Iterator[list[Any]]]:
        # `state import` reads SQLite; this side (all rows at once) is for comparisons.
        with self._connection() as conn:
            cursor = conn.execute(_sql(sql), ())
            columns = [c.name for c in cursor.description or ()]
            rows = cursor.fetchall()
        return columns, iter([rows[i : i + size] for i in range(0, len(rows), size)])

    def schema_version(self, db: Db) -> int:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        if db.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return 0
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise StateError(
                f"the database {self.target} has a table `meta` that labelsync did not make: "
                f"give labelsync a database of its own ({SETTING})"
            )
        return int(row[0])

    def set_schema_version(self, db: Db, version: int) -> None:
        db.execute(
            "INSERT INTO meta VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    def migration(self, index: int, script: str) -> list[str]:
        shared = [_ddl(s) for s in script.split(";") if s.strip()]
        return [*shared, *_AFTER.get(index, ())]

    def share(self) -> PostgresBackend:
        return PostgresBackend(self.target, self._pool)

    def close(self) -> None:
        if self._owner or isinstance(self._pool, _Single):
            self._pool.close()
