"""The PostgreSQL state (LABELSYNC_STATE_URL) against a real PostgreSQL started by the
suite: migrations, where the password comes from and where it never goes, a server
that goes away and comes back, and `labelsync state import` from a SQLite state.

The State API itself runs on both backends in test_state.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labelsync.files import FileStat
from labelsync.settings import ConfigError, load
from labelsync.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    TABLES,
    TRANSIENT,
    ConversationRecord,
    FileRecord,
    Identity,
    LineRef,
    LogPosition,
    Pending,
    State,
    StateError,
    StateUnavailable,
    Tailed,
    VersionRecord,
)
from labelsync.state_postgres import PostgresTarget, open_postgres
from tests.daemon.conftest import run, versions_in
from tests.daemon.test_state import assert_keeps_what_schema_1_knew
from tests.support.corpus import write_atomic, write_corpus
from tests.support.labelstudio import free_port
from tests.support.postgres import ROLE, PostgresServer

FIXTURES = Path(__file__).parent / "fixtures"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `labelsync` command with no Label Studio involved."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_", "PG"))
        and k not in ("CREDENTIALS_DIRECTORY",)
    }
    return {**base, "LABELSYNC_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200", **extra}


def one_line_naming_the_setting(result: Any) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "LABELSYNC_STATE_URL" in result.stderr
    return str(result.stderr)


# -- migrations ----------------------------------------------------------------------------
def test_state_migrate_makes_the_schema_with_bigint_ids_then_finds_it_up_to_date(
    postgres: PostgresServer, pg_database: str, pg_url: str, tmp_path: Path
):
    env = cli_env(tmp_path, LABELSYNC_STATE_URL=pg_url)
    shown = postgres.url(pg_database)  # the URL without its password
    first = run(["state", "migrate"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{shown}: created at schema {SCHEMA_VERSION}"
    again = run(["state", "migrate"], env)
    assert again.stdout.strip() == f"{shown}: schema {SCHEMA_VERSION}, up to date"
    with postgres.admin(pg_database) as db:
        tables = {
            r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        types = dict(
            db.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            ).fetchall()
        )
    assert tables == set(TABLES) | set(TRANSIENT)
    for column in ("versions.task_id", "versions.project_id", "outbox.project_id", "lines.rowid"):
        assert types[column] == "bigint"
    assert types["files.mtime_ns"] == "bigint"  # nanoseconds since 1970 overflow 32 bits
    assert types["versions.synced_at"] == "double precision"
    assert types["claims.expires_at"] == types["outbox.expires_at"] == "double precision"


def _schema_1(postgres: PostgresServer, dbname: str) -> None:
    """A database at schema 1, holding the rows of the 0.1 release's SQLite fixture.

    Written by hand, not by labelsync's migration code: schema 1 as PostgreSQL spells it.
    """
    source = sqlite3.connect(FIXTURES / "state-v1.sqlite3")
    with postgres.admin(dbname) as db:
        db.execute(f"SET ROLE {ROLE}")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, size BIGINT NOT NULL,"
            " mtime_ns BIGINT NOT NULL, inode BIGINT NOT NULL, sha256 TEXT NOT NULL,"
            " thread_id TEXT, status TEXT NOT NULL, reason TEXT,"
            " updated_at DOUBLE PRECISION NOT NULL)"
        )
        db.execute(
            "CREATE TABLE versions (thread_id TEXT NOT NULL, version BIGINT NOT NULL,"
            " sync_key TEXT NOT NULL UNIQUE, task_id BIGINT NOT NULL, source_file TEXT NOT NULL,"
            " synced_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (thread_id, version))"
        )
        db.execute(
            "CREATE TABLE outbox (sync_key TEXT PRIMARY KEY, thread_id TEXT NOT NULL,"
            " version BIGINT NOT NULL, source_file TEXT NOT NULL,"
            " sent_at DOUBLE PRECISION NOT NULL)"
        )
        for table in ("meta", "files", "versions", "outbox"):
            rows = source.execute(f"SELECT * FROM {table}").fetchall()
            assert rows, table
            marks = ",".join(["%s"] * len(rows[0]))
            with db.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")


def test_a_schema_1_database_migrates_and_keeps_what_it_knew(
    postgres: PostgresServer, pg_database: str, pg_url: str
):
    _schema_1(postgres, pg_database)
    state = State.open(pg_url)
    try:
        assert_keeps_what_schema_1_knew(state)
        assert state.get_meta("schema_version") == str(SCHEMA_VERSION)
        with state.transaction() as tx:  # the tables schema 2 added work
            tx.add_lines([LineRef("t", "a.jsonl", "h", 0, 5, 1)])
            tx.put_tailed([Tailed("t", "a.jsonl", 1.0, False, True)])
        assert state.lines_of(["t"])["t"][0].path == "a.jsonl"
    finally:
        state.close()


def test_daemons_starting_at_once_on_a_new_database_migrate_it_once(pg_url: str):
    opened: list[State] = []
    failures: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(State.open(pg_url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert failures == []
        assert sorted(s.schema_found for s in opened) == [0, *[SCHEMA_VERSION] * 3]
    finally:
        for state in opened:
            state.close()


# -- the password: where it comes from ----------------------------------------------------
def test_the_password_may_come_from_the_secrets_directory(
    postgres: PostgresServer, pg_database: str, tmp_path: Path
):
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    (secrets / "labelsync-state-password").write_text(postgres.password + "\n")
    env = cli_env(
        tmp_path,
        LABELSYNC_STATE_URL=postgres.url(pg_database),
        CREDENTIALS_DIRECTORY=str(secrets),
    )
    result = run(["state", "migrate"], env)
    assert result.returncode == 0, result.stderr
    assert "created at schema" in result.stdout


def test_the_password_may_come_from_pgpass(
    postgres: PostgresServer, pg_database: str, tmp_path: Path
):
    home = tmp_path / "home"
    home.mkdir()
    pgpass = home / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:{pg_database}:{ROLE}:{postgres.password}\n")
    pgpass.chmod(0o600)  # libpq ignores a .pgpass others can read
    env = cli_env(tmp_path, LABELSYNC_STATE_URL=postgres.url(pg_database), HOME=str(home))
    result = run(["state", "migrate"], env)
    assert result.returncode == 0, result.stderr


def test_a_password_in_the_url_wins_over_the_secrets_directory(
    postgres: PostgresServer, pg_database: str, tmp_path: Path
):
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    (secrets / "labelsync-state-password").write_text("not-the-password")
    env = cli_env(
        tmp_path,
        LABELSYNC_STATE_URL=postgres.url(pg_database, password=True),
        CREDENTIALS_DIRECTORY=str(secrets),
    )
    assert run(["state", "migrate"], env).returncode == 0


def test_connection_failures_at_start_are_one_line_naming_the_setting(
    postgres: PostgresServer, pg_database: str, tmp_path: Path
):
    wrong = f"postgresql://{ROLE}:Wr0ng-S3cret@127.0.0.1:{postgres.port}/{pg_database}"
    refused = one_line_naming_the_setting(
        run(["state", "migrate"], cli_env(tmp_path, LABELSYNC_STATE_URL=wrong))
    )
    assert "password authentication failed" in refused and "Wr0ng-S3cret" not in refused

    nobody = f"postgresql://{ROLE}:Wr0ng-S3cret@127.0.0.1:{free_port()}/x"
    down = one_line_naming_the_setting(
        run(["state", "migrate"], cli_env(tmp_path, LABELSYNC_STATE_URL=nobody))
    )
    assert "PostgreSQL is running" in down and "Wr0ng-S3cret" not in down

    env = cli_env(tmp_path, LABELSYNC_STATE_URL=postgres.url(pg_database), HOME=str(tmp_path))
    missing = one_line_naming_the_setting(run(["state", "migrate"], env))
    assert "no password supplied" in missing

    bad = cli_env(tmp_path, LABELSYNC_STATE_URL="mysql://root:Wr0ng-S3cret@db/x")
    result = run(["state", "migrate"], bad)
    assert result.returncode == 2 and "LABELSYNC_STATE_URL: must start with postgresql://" in (
        result.stderr
    )
    assert "Wr0ng-S3cret" not in result.stderr


def test_an_unreachable_server_at_start_is_state_unavailable_a_refusal_is_not(
    postgres: PostgresServer, pg_database: str
):
    """The daemon may wait for a server that is down; a wrong password needs a person."""
    with pytest.raises(StateUnavailable):
        open_postgres(f"postgresql://{ROLE}@127.0.0.1:{free_port()}/x", password="p")
    with pytest.raises(StateError) as refused:
        open_postgres(postgres.url(pg_database), password="wrong")
    assert not isinstance(refused.value, StateUnavailable)


# -- the password: where it never goes ----------------------------------------------------
def test_the_password_is_never_in_a_log_an_error_status_or_a_repr(
    postgres: PostgresServer,
    pg_database: str,
    pg_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    secret = postgres.password
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    down_message = ""
    state = open_postgres(pg_url, timeout_s=2)
    try:
        state.bind("http://ls:8080", 5)
        seen += [repr(state), str(state.where), repr(state.path), str(state.path)]
        seen.append(repr(PostgresTarget(pg_url)))
        with postgres.stopped():
            with pytest.raises(StateUnavailable) as down:
                state.counts()
            down_message = str(down.value)
        state.counts()
    finally:
        state.close()
    with pytest.raises(StateError) as wrong:  # a wrong password that holds the right one
        open_postgres(f"postgresql://{ROLE}:{secret}x@127.0.0.1:{postgres.port}/{pg_database}")
    seen.append(str(wrong.value))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABELSYNC_STATE_URL", pg_url)
        seen.append(repr(load()))
    env = cli_env(tmp_path, LABELSYNC_STATE_URL=pg_url)
    status = run(["status"], env)
    as_json = run(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert f"state:          {postgres.url(pg_database)}" in status.stdout
    assert json.loads(as_json.stdout)["state_url"] == postgres.url(pg_database)
    seen += [down_message, status.stdout, status.stderr, as_json.stdout, as_json.stderr]
    seen.append(caplog.text)
    assert "is unavailable" in down_message and postgres.url(pg_database) in down_message
    for text in seen:
        assert secret not in text


def test_settings_hold_the_url_and_password_as_secrets(tmp_path: Path, monkeypatch):
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    (secrets / "labelsync-state-password").write_text("from-the-secrets-dir\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(secrets))
    monkeypatch.setenv("LABELSYNC_STATE_URL", "postgresql://u:in-the-url@db:5432/labelsync")
    settings = load()
    assert settings.database_url == "postgresql://u:in-the-url@db:5432/labelsync"
    assert settings.database_password == "from-the-secrets-dir"
    assert "in-the-url" not in repr(settings) and "from-the-secrets-dir" not in repr(settings)
    monkeypatch.setenv("LABELSYNC_STATE_URL", "https://u:in-the-url@db/labelsync")
    with pytest.raises(ConfigError) as bad:
        load()
    assert "LABELSYNC_STATE_URL" in str(bad.value) and "in-the-url" not in str(bad.value)


# -- a server that goes away --------------------------------------------------------------
def _one_version(state: State, key: str = "k1", version: int = 1) -> None:
    with state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", version, key, 10 + version, "a.json")])


def test_a_call_while_postgresql_is_down_is_state_unavailable_and_works_when_it_is_back(
    postgres: PostgresServer, pg_url: str
):
    state = open_postgres(pg_url, timeout_s=2)
    try:
        _one_version(state)
        with postgres.stopped():
            with pytest.raises(StateUnavailable):
                state.versions_of(1, ["t"])
            with pytest.raises(StateUnavailable):  # a write, too: nothing half-done
                _one_version(state, "k2", 2)
        assert [v.sync_key for v in state.versions_of(1, ["t"])["t"]] == ["k1"]
        _one_version(state, "k2", 2)
        assert len(state.versions_of(1, ["t"])["t"]) == 2
    finally:
        state.close()


def test_after_a_restart_the_next_call_may_fail_once_then_calls_work(
    postgres: PostgresServer, pg_url: str
):
    state = open_postgres(pg_url, timeout_s=2)
    reader = State.open(state.path)  # the engine's reader thread shares the pool
    try:
        _one_version(state)
        postgres.restart()
        for handle in (state, reader):
            with contextlib.suppress(StateUnavailable):  # a connection the restart ended
                handle.versions_of(1, ["t"])
            assert handle.versions_of(1, ["t"])["t"][0].task_id == 11
    finally:
        reader.close()
        state.close()


def test_a_restart_inside_a_transaction_leaves_none_of_it(postgres: PostgresServer, pg_url: str):
    state = open_postgres(pg_url, timeout_s=2)
    try:
        with pytest.raises(StateUnavailable), state.transaction() as tx:
            tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
            postgres.restart()
            tx.put_outbox([Pending(1, "k2", "t", 2, "a.json", 1.0)])
        for _ in range(2):  # the first call may meet a connection the restart ended
            try:
                assert state.versions_of(1, ["t"]) == {} and state.pending() == []
                break
            except StateUnavailable:
                pass
        else:
            raise AssertionError("the state did not come back")
        _one_version(state)
        assert state.versions_of(1, ["t"])["t"][0].sync_key == "k1"
    finally:
        state.close()


def test_text_postgresql_cannot_store_is_found_again_by_the_same_id(pg_url: str):
    """JSON allows "\\u0000" in a conversation id; PostgreSQL's text does not."""
    state = State.open(pg_url)
    try:
        with state.transaction() as tx:
            tx.add_versions([VersionRecord(1, "a\x00b", 1, "k", 1, "f\x00.json")])
            tx.put_conversations([ConversationRecord("f\x00.json", "\ud800", "\ud800", "waiting")])
        assert state.versions_of(1, ["a\x00b"])["a\x00b"][0].task_id == 1
        assert state.with_status("waiting") == [("f\ufffd.json", "\ufffd")]
        with state.transaction() as tx:  # a file read again still holds that conversation
            tx.put_conversations([ConversationRecord("g", "x\x00", "x\x00", "waiting")])
            tx.keep_only_conversations("g", ["x\x00"])
        assert state.conversations_of("g") != {}
    finally:
        state.close()


# -- state import --------------------------------------------------------------------------
def _written_sqlite_state(directory: Path, project_id: int = 3) -> None:
    """A SQLite state with rows in every table, written through the State API."""
    directory.mkdir(parents=True)
    state = State.open(directory / STATE_FILE)
    state.bind("http://ls:8080", project_id)
    with state.transaction() as tx:
        tx.put_files(
            [FileRecord(f"f{i}.json", FileStat(i, i * 10**18, i), "read") for i in range(7)]
        )
        tx.put_conversations(
            [ConversationRecord(f"f{i}.json", f"t{i}", f"t{i}", "synced") for i in range(7)]
        )
        tx.add_versions(
            VersionRecord(project_id, f"t{i}", v, f"k{i}-{v}", 100 * i + v, f"f{i}.json")
            for i in range(7)
            for v in (1, 2)
        )
        tx.put_outbox([Pending(project_id, "k9", "t9", 1, "f9.json", 5.0)])
        tx.put_logs([LogPosition("h", "a.jsonl", 300, 7, "c")])
        tx.add_lines(LineRef("t7", "a.jsonl", "h", 1000 - 10 * n, 10, n) for n in range(50))
        tx.put_tailed([Tailed("t7", "a.jsonl", 9.5, False, True)])
    state.close()


def _every_row(state: State, site: str = "") -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table; a file record of `site` is shown as one of site ''."""
    found = {}
    for table in TABLES:
        columns, batches = state.rows_of(table)
        rows = [dict(zip(columns, row, strict=True)) for batch in batches for row in batch]
        if table == "meta":
            rows = [r for r in rows if r["key"] != "schema_version"]
        for r in rows:
            if r.get("site") == site:
                r["site"] = ""
        keep_order = table == "lines"
        found[table] = [tuple(sorted(r.items())) for r in rows]
        if not keep_order:
            found[table].sort()
    return found


def test_state_import_copies_every_table_as_it_is_and_refuses_to_mix_states(
    postgres: PostgresServer, pg_database: str, pg_url: str, tmp_path: Path
):
    source_dir = tmp_path / "old-state"
    _written_sqlite_state(source_dir)
    # The import runs on the host whose files the SQLite state describes: they become
    # that daemon's file records (its name, as the daemon there will have it).
    env = cli_env(tmp_path, LABELSYNC_STATE_URL=pg_url, LABELSYNC_DAEMON_NAME="host-a")
    result = run(["state", "import", "--from", str(source_dir)], env)
    assert result.returncode == 0, result.stderr
    assert "versions 14" in result.stdout and "lines 50" in result.stdout
    assert "lines: 50 rows" in result.stderr and postgres.password not in result.stderr
    host_a = State.open(pg_url, Identity.here("host-a"))
    source, target = State.open(source_dir / STATE_FILE), host_a
    try:
        assert _every_row(target, site="host-a") == _every_row(source)
        assert [r.offset for r in target.lines_of(["t7"])["t7"]] == list(range(1000, 500, -10))
        assert len(target.files()) == 7 and target.log_position("h") is not None
        other = State.open(pg_url, Identity.here("host-b"))  # another host knows none of them
        assert other.files() == {} and other.log_position("h") is None
        other.close()
    finally:
        source.close()
        target.close()

    again = run(["state", "import", "--from", str(source_dir)], env)
    assert again.returncode == 0 and "already imported (the same 14 versions)" in again.stdout

    other = tmp_path / "other-state"
    _written_sqlite_state(other, project_id=4)
    refused = run(["state", "import", "--from", str(other)], env)
    assert refused.returncode == 2 and "belongs to project 3" in refused.stderr

    state = State.open(pg_url)  # the PostgreSQL state moves on: no longer the same data
    _one_version(state, "k-new", 3)
    state.close()
    refused = run(["state", "import", "--from", str(source_dir)], env)
    assert refused.returncode == 2 and "already holds a state" in refused.stderr


def test_state_import_needs_a_url_and_a_state_to_import(tmp_path: Path, pg_url: str):
    (tmp_path / "empty").mkdir()
    no_url = run(["state", "import", "--from", str(tmp_path / "empty")], cli_env(tmp_path))
    assert no_url.returncode == 2 and "LABELSYNC_STATE_URL" in no_url.stderr
    env = cli_env(tmp_path, LABELSYNC_STATE_URL=pg_url)
    nothing = run(["state", "import", "--from", str(tmp_path / "empty")], env)
    assert nothing.returncode == 2 and "no labelsync state in" in nothing.stderr


def _chat_log(path: Path, thread: str, turns: int) -> None:
    with path.open("a") as log:
        for n in range(turns):
            for role in ("user", "assistant"):
                line = {"conversation_id": thread, "role": role, "content": f"{role} {n}"}
                log.write(json.dumps(line) + "\n")


@pytest.mark.labelstudio
def test_a_backfilled_sqlite_state_imported_into_postgresql_sends_nothing_again(
    env: dict[str, str], ls_project: Any, pg_url: str, tmp_path: Path
):
    conversations = Path(env["LABELSYNC_WATCH_DIR"])
    write_corpus(conversations, 30)
    _chat_log(conversations / "bot.jsonl", "log-a", 2)
    _chat_log(conversations / "bot.jsonl", "log-b", 3)
    first = run(["backfill"], env)
    assert first.returncode == 0, first.stderr
    sent = versions_in(ls_project)
    assert len(sent) == 32

    on_postgres = {**env, "LABELSYNC_STATE_URL": pg_url}
    imported = run(["state", "import", "--from", env["LABELSYNC_STATE_DIR"]], on_postgres)
    assert imported.returncode == 0, imported.stderr

    again = run(["backfill"], on_postgres)
    assert again.returncode == 0, again.stderr
    assert versions_in(ls_project) == sent  # nothing sent twice
    status = json.loads(run(["status", "--json"], on_postgres).stdout)
    backfill = status["last_backfill"]
    assert backfill.get("new_tasks", 0) == backfill.get("new_versions", 0) == 0, backfill
    assert backfill["unchanged"] == 31 and status["counts"]["tasks"] == 32  # 30 files, 1 log

    # The conversations go on where the SQLite state left them: version 2, not a second 1.
    grown = sorted(conversations.glob("conversation_*.json"))[0]
    document = json.loads(grown.read_text())
    thread = document["metadata"]["thread_id"]
    document["messages"] += [
        {"role": "user", "content": "And one more thing?"},
        {"role": "assistant", "content": "Of course."},
    ]
    write_atomic(grown, document)
    _chat_log(conversations / "bot.jsonl", "log-a", 1)
    grew = run(["backfill"], on_postgres)
    assert grew.returncode == 0, grew.stderr
    now = versions_in(ls_project)
    assert (thread, 2) in now and ("log-a", 2) in now
    assert len(now) == len(set(now)) == 32  # version 1 of each retired: one live task each


# -- benchmark -----------------------------------------------------------------------------
@pytest.mark.labelstudio
@pytest.mark.skipif(
    not os.environ.get("LABELSYNC_BENCH_STATE"), reason="a benchmark: LABELSYNC_BENCH_STATE=1"
)
def test_benchmark_state_lookups_and_a_backfill_of_5000_files_sqlite_vs_postgresql(
    label_studio: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Prints figures for POSTGRES-README.md; asserts only what a user would notice.

    PostgreSQL here is a cluster of its own with fsync on (the suite's runs without),
    as SQLite runs with synchronous=FULL: both pay for durable commits.
    """
    import random

    from labelsync import state_postgres
    from tests.support.labelstudio import create_project

    files = int(os.environ.get("BENCH_STATE_FILES", "5000"))
    threads = 10_000

    def show(line: str) -> None:
        with capsys.disabled():
            print(f"  {line}", flush=True)

    def lookups(state: State, label: str) -> None:
        with state.transaction() as tx:
            tx.add_versions(
                VersionRecord(1, f"thread-{t:06d}", v, f"k{t}-{v}", t * 2 + v, "f.json")
                for t in range(threads)
                for v in (1, 2)
            )
        rng = random.Random(3)
        ids = [f"thread-{rng.randrange(threads):06d}" for _ in range(200_000)]
        started, calls = time.perf_counter(), 0
        while time.perf_counter() - started < 3.0:
            assert len(state.versions_of(1, [ids[calls % len(ids)]])) == 1
            calls += 1
        single = calls / (time.perf_counter() - started)
        started, found = time.perf_counter(), 0
        for n in range(20):
            found += len(state.versions_of(1, ids[n * 1000 : (n + 1) * 1000]))
        batched = found / (time.perf_counter() - started)
        show(
            f"versions_of, {label}: {single:,.0f} lookups/s one id a call; "
            f"{batched:,.0f} ids/s in calls of 1,000 (20,000 versions held)"
        )

    with PostgresServer(durable=True) as server:
        show(f"PostgreSQL {server.bin.parent.name} (fsync on), SQLite {sqlite3.sqlite_version}")
        sqlite_state = State.open(tmp_path / "lookups.sqlite3")
        lookups(sqlite_state, "SQLite")
        sqlite_state.close()
        pg_state = State.open(server.url(server.create_database(), password=True))
        lookups(pg_state, "PostgreSQL")
        pg_state.close()
        every = state_postgres._PING_AFTER_S
        state_postgres._PING_AFTER_S = 0.0  # the alternative: check every borrowed connection
        try:
            pg_state = State.open(server.url(server.create_database(), password=True))
            lookups(pg_state, "PostgreSQL checking each connection it borrows")
            pg_state.close()
        finally:
            state_postgres._PING_AFTER_S = every

        corpus = tmp_path / "corpus"
        write_corpus(corpus, files)
        base = cli_env(
            tmp_path,
            LABEL_STUDIO_URL=label_studio.url,
            LABEL_STUDIO_API_KEY=label_studio.legacy_token,
            LABELSYNC_WATCH_DIR=str(corpus),
        )
        for label, extra in (
            ("SQLite", {"LABELSYNC_STATE_DIR": str(tmp_path / "bench-state")}),
            (
                "PostgreSQL",
                {"LABELSYNC_STATE_URL": server.url(server.create_database(), password=True)},
            ),
        ):
            project = create_project(label_studio, f"bench-state-{label}")
            env = {**base, **extra, "LABEL_STUDIO_PROJECT_ID": str(project.id)}
            started = time.perf_counter()
            result = run(["backfill"], env, timeout=3600)
            elapsed = time.perf_counter() - started
            assert result.returncode == 0, result.stderr
            rerun_started = time.perf_counter()
            assert run(["backfill"], env, timeout=3600).returncode == 0
            rerun = time.perf_counter() - rerun_started
            status = json.loads(run(["status", "--json"], env).stdout)
            assert status["counts"]["tasks"] == files
            show(
                f"backfill of {files:,} files, {label}: {elapsed:.1f} s "
                f"({files / elapsed:,.0f} files/s, command wall time); rerun of the "
                f"unchanged directory {rerun:.1f} s"
            )
