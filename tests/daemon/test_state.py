"""The state: schema versions and migration, what it answers after what was written,
one writer per directory, clear failures.

Tests taking `where` run twice: on SQLite (a file) and on a real PostgreSQL (a new
database each time, over TCP with a password). The SQLite-only ones at the end are
about its file: the lock per directory, WAL, corruption, a read-only mount.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labelsync.files import FileStat
from labelsync.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    TABLES,
    TRANSIENT,
    ConversationRecord,
    FileRecord,
    LineRef,
    LogPosition,
    Pending,
    State,
    StateError,
    Tailed,
    VersionRecord,
    open_state_dir,
)
from labelsync.state_sqlite import SqliteBackend

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """What State.open takes, for a new state on the backend named in the test's id."""
    if request.param == "sqlite":
        return tmp_path / "s.sqlite3"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def reopen(where: str | Path) -> Iterator[Callable[[], State]]:
    """Open the test's state (again): each call is a new State on the same data."""
    opened: list[State] = []

    def open_() -> State:
        opened.append(State.open(where))
        return opened[-1]

    yield open_
    for state in opened:
        state.close()


def _store_schema_version(where: str | Path, version: int) -> None:
    """What a newer labelsync would leave behind, written without labelsync."""
    if isinstance(where, Path):
        db = sqlite3.connect(where)
        db.execute(f"PRAGMA user_version={version}")
        db.close()
        return
    import psycopg

    with psycopg.connect(str(where), autocommit=True) as db:
        db.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(version),))


# -- both backends -----------------------------------------------------------------------
def test_a_new_state_is_created_at_the_current_schema_version(reopen):
    first = reopen()
    assert first.schema_found == 0  # nothing there: every migration ran
    first.close()
    assert reopen().schema_found == SCHEMA_VERSION  # and nothing to do the next time


def test_a_state_from_a_newer_labelsync_is_refused(where, reopen):
    reopen().close()
    _store_schema_version(where, SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match="newer labelsync"):
        reopen()


def test_what_is_recorded_survives_reopening(reopen):
    state = reopen()
    with state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
        tx.put_files([FileRecord("a.json", FileStat(10, 20, 30), "read", sha256="sha")])
        tx.put_conversations([ConversationRecord("a.json", "t", "t", "synced", "v1")])
        tx.put_outbox([Pending(1, "k2", "t", 2, "a.json", 1.0)])
        tx.add_lines([LineRef("t", "log.jsonl", "h", 0, 10, 1)])
        tx.put_tailed([Tailed("t", "log.jsonl", 5.0, False, True)])
    state.close()
    state = reopen()
    assert state.versions_of(1, ["t"])["t"][0].task_id == 11
    assert state.versions_of(2, ["t"]) == {}  # versions are per project
    assert state.file("a.json").stat == FileStat(10, 20, 30)  # type: ignore[union-attr]
    assert [p.sync_key for p in state.pending()] == ["k2"]
    assert state.lines_of(["t"])["t"][0].length == 10
    assert [t.thread_id for t in state.tailed()] == ["t"]


def test_a_failed_transaction_leaves_nothing(reopen):
    state = reopen()
    with pytest.raises(RuntimeError), state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
        raise RuntimeError("crash between two writes")
    assert state.versions_of(1, ["t"]) == {}


def test_a_transaction_reads_what_it_wrote_before_committing(reopen):
    state = reopen()
    with state.transaction() as tx:
        tx.set_meta("k", "1")
        assert tx.get_meta("k") == "1"
        assert state.get_meta("k") == "1"  # the same thread's reads see it, as on SQLite


def test_a_state_belongs_to_one_project(reopen):
    state = reopen()
    state.bind("http://a:8080", 3)
    state.bind("http://b:8080", 3)  # a new address for the same project is fine
    with pytest.raises(StateError, match="belongs to project 3, not 4"):
        state.bind("http://a:8080", 4)
    assert reopen().get_meta("url") == "http://b:8080"


def test_strings_sqlite_cannot_store_are_kept_readable(reopen):
    """A conversation id from JSON can hold a lone surrogate ("\\ud800")."""
    state = reopen()
    with state.transaction() as tx:
        tx.put_conversations([ConversationRecord("a.json", "\ud800x", "\ud800x", "waiting", "r")])
    assert state.problems("waiting")[0][0] == "a.json"


def test_lines_of_a_conversation_come_back_in_the_order_they_were_read(reopen):
    """A conversation continued in a rotated log: its lines are not in offset order."""
    state = reopen()
    with state.transaction() as tx:
        tx.add_lines(
            [LineRef("t", "log.1", "h1", 500, 10, 40), LineRef("u", "log.1", "h1", 0, 9, 1)]
        )
    with state.transaction() as tx:
        tx.add_lines([LineRef("t", "log", "h2", 0, 12, 1), LineRef("t", "log", "h2", 12, 8, 2)])
    assert [(r.path, r.offset) for r in state.lines_of(["t"])["t"]] == [
        ("log.1", 500),
        ("log", 0),
        ("log", 12),
    ]
    with state.transaction() as tx:
        tx.replace_lines("t", [LineRef("t", "whole.jsonl", "h3", 0, 99, 1)])
        tx.drop_lines_of("h1")
    assert [r.path for r in state.lines_of(["t", "u"])["t"]] == ["whole.jsonl"]
    assert "u" not in state.lines_of(["u"])


def test_every_question_the_engine_asks_has_the_same_answer_on_both(reopen):
    """One history of writes; the answers are written out, so both backends must agree."""
    state = reopen()
    with state.transaction() as tx:
        tx.put_files(
            [
                FileRecord("a.json", FileStat(1, 2, 3), "read", sha256="s1"),
                FileRecord("b.json", FileStat(4, 5, 6), "quarantined", "not JSON"),
                FileRecord("c.jsonl", FileStat(7, 8, 9), "read", head="h"),
            ]
        )
        tx.put_conversations(
            [
                ConversationRecord("a.json", "t1", "t1", "synced", None, "", "k1", 1, "all"),
                ConversationRecord("a.json", "t2", "t2", "waiting", "1 of 2 user turns"),
                ConversationRecord("a.json", "t3", "t3", "rejected", "too big", "[2]"),
            ]
        )
        tx.add_versions(
            [
                VersionRecord(1, "t1", 1, "k1", 101, "a.json"),
                VersionRecord(1, "t1", 2, "k2", 102, "a.json"),
                VersionRecord(1, "t1", 3, "k3", 103, "a.json"),
                VersionRecord(2, "t9", 1, "k9", 900, "z.json", retired=True),
            ]
        )
        tx.add_versions([VersionRecord(1, "t1", 1, "k1", 555, "again.json")])  # kept as it was
        tx.put_outbox([Pending(1, "k4", "t2", 1, "a.json", 5.0), Pending(1, "k5", "t3", 1, "a", 6)])
        tx.put_logs([LogPosition("h", "c.jsonl", 120, 3, "tail")])
        tx.put_tailed(
            [Tailed("x", "c.jsonl", 1.0, False, True), Tailed("y", "d.jsonl", 2.0, True, True)]
        )
    with state.transaction() as tx:
        tx.retire(1, ["k1"])
        tx.keep(1, ["k2"])
        tx.set_feedback_key(1, "k3", "fb")
        tx.drop_outbox([(1, "k5")])
        tx.close_tailed(["y"])
        tx.keep_only_conversations("a.json", ["t1", "t3"])
        tx.set_meta("project_id", "1")
    versions = state.versions_of(1, ["t1", "t1", "nobody"])
    assert [(v.version, v.task_id, v.retired, v.feedback_key) for v in versions["t1"]] == [
        (1, 101, True, ""),
        (2, 102, False, ""),
        (3, 103, False, "fb"),
    ]
    assert state.superseded(1) == []  # 1 retired, 2 kept, 3 the latest
    assert state.highest_task_id(1) == 103 and state.highest_task_id(3) == 0
    assert state.sent_since(1, 0.0) == 3 and state.sent_since(1, 4e9) == 0
    assert sorted(state.conversations_of("a.json")) == ["t1", "t3"]
    assert state.conversations_of("a.json")["t1"].sync_key == "k1"
    assert state.with_status("rejected") == [("a.json", "t3")]
    assert [(p.sync_key, p.sent_at) for p in state.pending()] == [("k4", 5.0)]
    assert state.log_position("h") == LogPosition("h", "c.jsonl", 120, 3, "tail")
    assert state.log_position("other") is None
    assert [t.thread_id for t in state.tailed()] == ["x"]
    assert [t.thread_id for t in state.tailed(open_only=False, path="d.jsonl")] == ["y"]
    assert sorted(state.files_for(["a.json", "c.jsonl", "nope"])) == ["a.json", "c.jsonl"]
    assert state.file("c.jsonl").head == "h"  # type: ignore[union-attr]
    assert state.problems("quarantined") == [("b.json", "", "not JSON")]
    assert state.problems("rejected", limit=5) == [("a.json", "[2]", "too big")]
    assert state.counts() == {
        "conversations": 2,
        "tasks": 4,
        "retired": 2,
        "outbox": 1,
        "files": 3,
        "synced": 1,
        "rejected": 1,
        "quarantined": 1,
        "open_tailed": 1,
        "rule:all": 1,
        "project:1": 2,
    }
    assert state.table_counts() == {
        "meta": state.table_counts()["meta"],  # PostgreSQL keeps its schema version there
        "files": 3,
        "conversations": 2,
        "versions": 4,
        "outbox": 1,
        "logs": 1,
        "lines": 0,
        "tailed": 2,
    }
    with state.transaction() as tx:
        tx.forget_file("a.json")
        tx.reopen_tailed(["y"])
    assert state.conversations_of("a.json") == {} and state.file("a.json") is None
    assert len(state.tailed()) == 2


def test_another_thread_opens_its_own_handle_on_the_same_state(reopen):
    """What the engine's reader thread does: State.open(state.path)."""
    state = reopen()
    with state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
    reader = State.open(state.path)
    assert reader.versions_of(1, ["t"])["t"][0].sync_key == "k1"
    reader.close()
    assert state.versions_of(1, ["t"])["t"][0].task_id == 11  # closing it left this one open


def test_the_table_list_is_the_schema(tmp_path: Path):
    """`state import` copies TABLES: a table added by a migration must be listed there,
    or among the running daemons' own (TRANSIENT), which an import leaves behind."""
    State.open(tmp_path / "s.sqlite3").close()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(TABLES) | set(TRANSIENT)


# -- SQLite only: its file and directory ---------------------------------------------------
def test_a_new_sqlite_state_is_in_wal_mode_at_the_current_version(tmp_path: Path):
    State.open(tmp_path / "s.sqlite3").close()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def assert_keeps_what_schema_1_knew(state: State) -> None:
    """The rows of the schema-1 fixture (SQLite file; the same rows made in PostgreSQL)."""
    assert state.schema_found == 1
    versions = state.versions_of(7, ["alpha", "beta"])
    assert [(v.version, v.task_id) for v in versions["alpha"]] == [(1, 101), (2, 102)]
    assert versions["beta"][0].sync_key == "c" * 32
    assert [(p.project_id, p.thread_id) for p in state.pending()] == [(7, "delta")]
    alpha = state.file("/srv/conversations/conversation_alpha.json")
    assert alpha is not None and alpha.stat == FileStat(900, 1700000000000000000, 11)
    assert alpha.sha256 == "e" * 64 and alpha.status == "read"
    assert state.problems("waiting") == [
        (
            "/srv/conversations/conversation_gamma.json",
            "",
            "1 of 2 user turns (LABELSYNC_MIN_TURNS)",
        )
    ]
    assert state.problems("quarantined") == [
        ("/srv/conversations/broken.json", "", "not valid JSON: Expecting value (line 1, column 1)")
    ]
    assert state.get_meta("project_id") == "7" and state.get_meta("rebuilt")


def test_a_state_written_by_labelsync_0_1_migrates_and_keeps_what_it_knew(tmp_path: Path):
    """tests/daemon/fixtures/state-v1.sqlite3 was written by the 0.1 release's state.py."""
    path = tmp_path / STATE_FILE
    shutil.copy(FIXTURES / "state-v1.sqlite3", path)
    state = State.open(path)
    assert_keeps_what_schema_1_knew(state)
    state.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_one_labelsync_per_state_directory(tmp_path: Path):
    state, lock = open_state_dir(tmp_path)
    try:
        with pytest.raises(StateError, match="another labelsync"):
            open_state_dir(tmp_path)
    finally:
        state.close()
        lock.release()
    state, lock = open_state_dir(tmp_path)  # free again
    state.close()
    lock.release()
    assert (tmp_path / STATE_FILE).exists()


def test_a_sqlite_state_belongs_to_one_project_says_which_directory_setting(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    state.bind("http://a:8080", 3)
    with pytest.raises(StateError, match="set LABELSYNC_STATE_DIR to a directory of its own"):
        state.bind("http://a:8080", 4)


def test_a_corrupt_state_is_one_line_that_says_how_to_recover(tmp_path: Path):
    (tmp_path / STATE_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as info:
        open_state_dir(tmp_path)
    message = str(info.value)
    assert "corrupt" in message and "move the state directory aside" in message
    assert "\n" not in message


def test_a_read_only_state_is_one_line(tmp_path: Path):
    path = tmp_path / STATE_FILE
    State.open(path).close()
    # A read-only mount, as seen by SQLite (root ignores file modes; the URI does not).
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    state = State(SqliteBackend(read_only, str(path)))
    with pytest.raises(StateError, match="read-only"):
        state.set_meta("x", "y")


def test_a_state_directory_that_cannot_be_made_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="LABELSYNC_STATE_DIR"):
        open_state_dir(blocker / "state")


def test_sqlite_surrogates_leave_the_file_usable(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    with state.transaction() as tx:
        tx.put_conversations([ConversationRecord("a.json", "\ud800x", "\ud800x", "waiting", "r")])
    state.close()
    assert os.path.exists(tmp_path / "s.sqlite3")
    assert State.open(tmp_path / "s.sqlite3").problems("waiting")[0][0] == "a.json"
