"""The state: schema versions and migration, one writer per directory, clear failures."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from labelsync.files import FileStat
from labelsync.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    ConversationRecord,
    FileRecord,
    LineRef,
    Pending,
    State,
    StateError,
    Tailed,
    VersionRecord,
    open_state_dir,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_new_state_is_created_at_the_current_schema_version(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    state.close()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_state_from_a_newer_labelsync_is_refused(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    State.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer labelsync"):
        State.open(path)


def test_a_state_written_by_labelsync_0_1_migrates_and_keeps_what_it_knew(tmp_path: Path):
    """tests/daemon/fixtures/state-v1.sqlite3 was written by the 0.1 release's state.py."""
    path = tmp_path / STATE_FILE
    shutil.copy(FIXTURES / "state-v1.sqlite3", path)
    state = State.open(path)
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
    state.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_what_is_recorded_survives_reopening(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    state = State.open(path)
    with state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
        tx.put_files([FileRecord("a.json", FileStat(10, 20, 30), "read", sha256="sha")])
        tx.put_conversations([ConversationRecord("a.json", "t", "t", "synced", "v1")])
        tx.put_outbox([Pending(1, "k2", "t", 2, "a.json", 1.0)])
        tx.add_lines([LineRef("t", "log.jsonl", "h", 0, 10, 1)])
        tx.put_tailed([Tailed("t", "log.jsonl", 5.0, False, True)])
    state.close()
    state = State.open(path)
    assert state.versions_of(1, ["t"])["t"][0].task_id == 11
    assert state.versions_of(2, ["t"]) == {}  # versions are per project
    assert state.file("a.json").stat == FileStat(10, 20, 30)  # type: ignore[union-attr]
    assert [p.sync_key for p in state.pending()] == ["k2"]
    assert state.lines_of(["t"])["t"][0].length == 10
    assert [t.thread_id for t in state.tailed()] == ["t"]


def test_a_failed_transaction_leaves_nothing(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    with pytest.raises(RuntimeError), state.transaction() as tx:
        tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
        raise RuntimeError("crash between two writes")
    assert state.versions_of(1, ["t"]) == {}


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


def test_a_state_belongs_to_one_project(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    state.bind("http://a:8080", 3)
    state.bind("http://b:8080", 3)  # a new address for the same project is fine
    with pytest.raises(StateError, match="belongs to project 3, not 4"):
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
    state = State(read_only, str(path))
    with pytest.raises(StateError, match="read-only"):
        state.set_meta("x", "y")


def test_a_state_directory_that_cannot_be_made_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="LABELSYNC_STATE_DIR"):
        open_state_dir(blocker / "state")


def test_strings_sqlite_cannot_store_are_kept_readable(tmp_path: Path):
    """A conversation id from JSON can hold a lone surrogate ("\\ud800")."""
    state = State.open(tmp_path / "s.sqlite3")
    with state.transaction() as tx:
        tx.put_conversations([ConversationRecord("a.json", "\ud800x", "\ud800x", "waiting", "r")])
    assert state.problems("waiting")[0][0] == "a.json"
    assert os.path.exists(tmp_path / "s.sqlite3")
