"""The state: schema versions, one writer per directory, the project it belongs to."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labelsync.files import FileStat
from labelsync.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    Pending,
    State,
    StateError,
    VersionRecord,
    open_state_dir,
)


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


def test_what_is_recorded_survives_reopening(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    state = State.open(path)
    with state.transaction() as db:
        state.add_versions(db, [VersionRecord("t", 1, "k1", 11, "a.json")])
        state.put_files(db, [("a.json", FileStat(10, 20, 30), "sha", "t", "synced", None)])
        state.put_outbox(db, [Pending("k2", "t", 2, "a.json", 1.0)])
    state.close()
    state = State.open(path)
    assert state.versions_of(["t"])["t"][0].task_id == 11
    assert state.file("a.json").stat == FileStat(10, 20, 30)  # type: ignore[union-attr]
    assert [p.sync_key for p in state.pending()] == ["k2"]


def test_a_failed_transaction_leaves_nothing(tmp_path: Path):
    state = State.open(tmp_path / "s.sqlite3")
    with pytest.raises(RuntimeError), state.transaction() as db:
        state.add_versions(db, [VersionRecord("t", 1, "k1", 11, "a.json")])
        raise RuntimeError("crash between two writes")
    assert state.versions_of(["t"]) == {}


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
