"""What several daemons sharing one state rely on, at the level of the state: claims
and leases by the database's clock, the outbox's owners, counts moved atomically,
each host's file records its own, lines indexed once, the daemons' rows.

Claims and leases are real on PostgreSQL only (tests against the suite's own
server); on SQLite (one daemon per state directory) they must cost nothing and
grant everything, which the tests taking `where` check on both.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from labelsync.files import FileStat
from labelsync.state import (
    _MIGRATIONS,
    STATE_FILE,
    ConversationRecord,
    DaemonRecord,
    FileRecord,
    Identity,
    LineRef,
    LogPosition,
    Pending,
    State,
    Tailed,
    VersionRecord,
)
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "s.sqlite3"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def daemon_state(pg_url: str):
    """A PostgreSQL state as seen by daemons of different names: open(name) -> State."""
    opened: list[State] = []

    def open_(name: str) -> State:
        opened.append(State.open(pg_url, Identity.here(name)))
        return opened[-1]

    yield open_
    for state in opened:
        state.close()


# -- both backends ---------------------------------------------------------------------------
def test_the_expected_task_count_moves_by_what_each_adds(where):
    state = State.open(where)
    try:
        with state.transaction() as tx:
            tx.add_to_meta("task_count:1", 5)  # not set yet: nothing to move
            tx.set_meta("task_count:1", "10")
            tx.add_to_meta("task_count:1", 5)
            tx.add_to_meta("task_count:1", -3)
            tx.raise_meta("seen_task:1", 40)
            tx.raise_meta("seen_task:1", 30)  # only ever up
            assert not tx.set_meta_if("task_count:1", "99", "10")  # changed since read
            assert tx.set_meta_if("task_count:1", "13", "12")
        assert state.get_meta("task_count:1") == "13"
        assert state.get_meta("seen_task:1") == "40"
    finally:
        state.close()


def test_a_line_indexed_again_is_kept_once(where):
    """A transaction tried again after a COMMIT of unknown outcome adds its lines again."""
    state = State.open(where)
    try:
        refs = [LineRef("t", "log.jsonl", "h", n * 10, 10, n + 1) for n in range(3)]
        for _ in range(2):
            with state.transaction() as tx:
                tx.add_lines(refs)
        assert [r.offset for r in state.lines_of(["t"])["t"]] == [0, 10, 20]
    finally:
        state.close()


def test_a_version_retired_twice_counts_once(where):
    state = State.open(where)
    try:
        with state.transaction() as tx:
            tx.add_versions([VersionRecord(1, "t", 1, "k1", 11, "a.json")])
            assert tx.retire(1, ["k1"]) == 1
            assert tx.retire(1, ["k1", "gone"]) == 0
    finally:
        state.close()


def test_on_sqlite_every_claim_is_granted_and_every_outbox_row_resolvable(tmp_path: Path):
    """One daemon per state directory: a row left behind is its predecessor's."""
    state = State.open(tmp_path / "s.sqlite3", Identity.here("host-a"))
    try:
        assert not state.shared and state.site == ""
        with state.transaction() as tx:
            tx.put_outbox([Pending(1, "k", "t", 1, "a.json", 1.0, "old:1:abc")], 3600)
        assert state.claim(1, ["t", "u"], 60) == {"t", "u"}
        assert [p.sync_key for p in state.resolvable()] == ["k"]
    finally:
        state.close()


def test_a_schema_2_state_migrates_keeping_its_rows_and_one_of_each_line(tmp_path: Path):
    path = tmp_path / STATE_FILE
    db = sqlite3.connect(path)
    for script in _MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("PRAGMA user_version=2")
    db.execute("INSERT INTO files VALUES ('a.jsonl', 30, 1, 2, '', 'h', 'read', NULL, 1.0)")
    db.execute(
        "INSERT INTO conversations VALUES ('a.jsonl', 't', 't', '', 'waiting', 'short',"
        " NULL, NULL, NULL, 1.0)"
    )
    db.execute("INSERT INTO logs VALUES ('h', 'a.jsonl', 30, 3, 'c', 1.0)")
    for offset in (0, 10, 10, 20):  # the same line indexed twice (schema 2 allowed it)
        db.execute("INSERT INTO lines VALUES ('t', 'a.jsonl', 'h', ?, 10, 1)", (offset,))
    db.execute("INSERT INTO tailed VALUES ('t', 'a.jsonl', 1.0, 0, 1)")
    db.execute("INSERT INTO outbox VALUES (1, 'k', 't', 1, 'a.jsonl', 1.0)")
    db.execute("INSERT INTO meta VALUES ('daemon', '{}')")
    db.commit()
    db.close()
    state = State.open(path)
    try:
        assert state.schema_found == 2
        assert state.file("a.jsonl") is not None and state.conversations_of("a.jsonl")
        assert state.log_position("h") == LogPosition("h", "a.jsonl", 30, 3, "c")
        assert [r.offset for r in state.lines_of(["t"])["t"]] == [0, 10, 20]
        assert [t.thread_id for t in state.tailed()] == ["t"]
        assert [(p.sync_key, p.owner) for p in state.resolvable()] == [("k", "")]
        assert state.get_meta("daemon") is None  # one row per daemon now: `daemons`
    finally:
        state.close()


# -- PostgreSQL: daemons sharing one state ---------------------------------------------------
def test_a_claim_is_one_daemons_until_released_or_its_lease_is_over(daemon_state):
    a, b = daemon_state("host-a"), daemon_state("host-b")
    assert a.claim(1, ["t1", "t2"], 60) == {"t1", "t2"}
    assert b.claim(1, ["t2", "t3"], 60) == {"t3"}  # t2 is a's: b does not wait for it
    assert a.claim(1, ["t1", "t3"], 60) == {"t1"}  # a keeps its own, t3 is b's now
    assert b.claim(2, ["t1"], 60) == {"t1"}  # claims are per project
    with a.transaction() as tx:
        tx.release(1, ["t2"], a.identity.owner)
        tx.release(1, ["t3"], a.identity.owner)  # not a's: stays b's
    assert b.claim(1, ["t2", "t3"], 60) == {"t2", "t3"}
    assert a.claim(1, ["t1"], 0.3) == {"t1"}  # a short lease, then a is gone (kill -9)
    assert b.claim(1, ["t1"], 60) == set()
    time.sleep(0.5)
    assert b.claim(1, ["t1"], 60) == {"t1"}


def test_daemons_claiming_overlapping_batches_at_once_each_get_a_share_once(daemon_state):
    """Four daemons, the same 300 conversations in four orders, all at once: each one is
    claimed by exactly one of them, and nobody deadlocks or fails."""
    states = [daemon_state(f"host-{n}") for n in range(4)]
    threads = [f"conversation-{n:03d}" for n in range(300)]
    won: dict[str, set[str]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def claim(state: State, seed: int) -> None:
        ids = threads[:]
        random.Random(seed).shuffle(ids)
        try:
            start.wait()
            got: set[str] = set()
            for n in range(0, 300, 25):  # batches, as chunks are
                got |= state.claim(1, ids[n : n + 25], 60)
            won[state.identity.name] = got
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=claim, args=(s, n)) for n, s in enumerate(states)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    holders = Counter(t for got in won.values() for t in got)
    assert set(holders) == set(threads) and max(holders.values()) == 1


def test_an_outbox_row_is_resolvable_by_others_only_once_its_lease_is_over(daemon_state):
    a, b = daemon_state("host-a"), daemon_state("host-b")
    with a.transaction() as tx:
        tx.put_outbox([Pending(1, "ka", "t", 1, "a.json", time.time(), a.identity.owner)], 0.5)
    with b.transaction() as tx:
        tx.put_outbox([Pending(1, "kb", "u", 1, "b.json", time.time(), b.identity.owner)], 60)
    assert [p.sync_key for p in a.resolvable()] == ["ka"]  # its own, always
    assert [p.sync_key for p in b.resolvable()] == ["kb"]
    assert [(p.sync_key, live) for p, live in b.outbox_of(1, ["t"])] == [("ka", True)]
    time.sleep(0.7)
    assert sorted(p.sync_key for p in b.resolvable()) == ["ka", "kb"]
    assert [live for _, live in b.outbox_of(1, ["t"])] == [False]
    a.renew(60)  # a was alive after all: its lease runs again
    assert [p.sync_key for p in b.resolvable()] == ["kb"]
    with b.transaction() as tx:  # only the row as it was read goes
        assert tx.drop_outbox([(1, "ka")], owner=b.identity.owner) == 0
        assert tx.drop_outbox([(1, "ka")], owner=a.identity.owner) == 1


def test_a_claim_checked_in_a_transaction_cannot_be_taken_until_it_ends(daemon_state):
    """The outbox's transaction checks its claims FOR UPDATE: a daemon taking them over
    waits, then sees the outbox rows written under them."""
    a, b = daemon_state("host-a"), daemon_state("host-b")
    assert a.claim(1, ["t"], 0.5) == {"t"}
    taken: list[set[str]] = []
    with a.transaction() as tx:
        assert tx.holding(1, ["t"], a.identity.owner, 0.0) == {"t"}
        thief = threading.Thread(target=lambda: taken.append(b.claim(1, ["t"], 60)))
        time.sleep(0.6)  # a's lease is over by now, but a's transaction holds the row
        thief.start()
        thief.join(0.5)
        assert thief.is_alive()  # b waits for a's transaction
        tx.put_outbox([Pending(1, "k", "t", 1, "a.json", time.time(), a.identity.owner)], 60)
    thief.join(10)
    assert taken == [{"t"}]
    assert [(p.owner, live) for p, live in b.outbox_of(1, ["t"])] == [(a.identity.owner, True)]


def test_each_host_keeps_its_own_file_records_under_the_same_paths(daemon_state):
    a, b = daemon_state("host-a"), daemon_state("host-b")
    for state, size in ((a, 1), (b, 2)):
        with state.transaction() as tx:
            tx.put_files([FileRecord("/srv/c/x.json", FileStat(size, 1, 1), "read")])
            tx.put_conversations([ConversationRecord("/srv/c/x.json", "t", "t", "waiting", "w")])
            tx.put_logs([LogPosition("h", "/srv/c/bot.jsonl", size * 100, size, None)])
            tx.add_lines([LineRef("t", "/srv/c/bot.jsonl", "h", 0, size, 1)])
            tx.put_tailed([Tailed("t", "/srv/c/bot.jsonl", 1.0, False, True)])
    with a.transaction() as tx:
        tx.forget_file("/srv/c/x.json")  # deleted on a's disk only
        tx.close_tailed(["t"])
    assert a.files() == {} and b.file("/srv/c/x.json").stat.size == 2  # type: ignore[union-attr]
    assert b.conversations_of("/srv/c/x.json") and not a.conversations_of("/srv/c/x.json")
    assert a.log_position("h").offset == 100 and b.log_position("h").offset == 200  # type: ignore[union-attr]
    assert a.lines_of(["t"])["t"][0].length == 1 and b.lines_of(["t"])["t"][0].length == 2
    assert a.tailed() == [] and [t.thread_id for t in b.tailed()] == ["t"]
    assert b.problems("waiting") == [("/srv/c/x.json", "", "w")]
    assert b.problems("waiting", every_site=True) == [("/srv/c/x.json", "", "w")]
    with a.transaction() as tx:
        tx.put_conversations([ConversationRecord("/srv/c/y.json", "u", "u", "waiting", "v")])
        tx.put_files([FileRecord("/srv/c/y.json", FileStat(1, 1, 1), "read")])
    assert b.problems("waiting", every_site=True) == [
        ("host-a:/srv/c/y.json", "", "v"),
        ("host-b:/srv/c/x.json", "", "w"),
    ]


def test_the_expected_count_is_exact_when_daemons_add_at_once(daemon_state):
    states = [daemon_state(f"host-{n}") for n in range(4)]
    states[0].set_meta("task_count:1", "0")

    def add(state: State) -> None:
        for _ in range(50):
            with state.transaction() as tx:
                tx.add_to_meta("task_count:1", 1)

    workers = [threading.Thread(target=add, args=(s,)) for s in states]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert states[0].get_meta("task_count:1") == "200"


def test_each_daemon_publishes_its_own_row(daemon_state):
    a, b = daemon_state("host-a"), daemon_state("host-b")
    for state, backlog in ((a, 3), (b, 5)):
        identity = state.identity
        state.publish(
            DaemonRecord(
                identity.owner,
                identity.name,
                identity.pid,
                "running",
                time.time(),
                0.0,
                backlog,
                None,
                None,
                "/srv/c",
                {"new_tasks": backlog},
            )
        )
    seen = {record.name: (record.backlog, record.totals, ago) for record, ago in a.daemons()}
    assert seen.keys() == {"host-a", "host-b"}
    assert seen["host-b"][:2] == (5, {"new_tasks": 5}) and seen["host-b"][2] < 5


def test_a_postgresql_state_of_the_previous_schema_becomes_the_upgrading_hosts(
    postgres: PostgresServer, pg_database: str, pg_url: str
):
    """Before schema 3 one daemon used a PostgreSQL state: its file records are those of
    the host that upgrades it (a second host starts with none, and reads its own)."""
    with postgres.admin(pg_database) as db:
        db.execute("SET ROLE labelsync")
        for n, script in enumerate(_MIGRATIONS[:2]):
            for statement in PostgresBackendStatements.of(n, script):
                db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        db.execute(
            "INSERT INTO files VALUES ('/srv/c/x.json', 1, 1, 1, 's', NULL, 'read', NULL, 1.0)"
        )
        db.execute("INSERT INTO logs VALUES ('h', '/srv/c/bot.jsonl', 5, 1, NULL, 1.0)")
    upgraded = State.open(pg_url, Identity.here("host-a"))
    other = State.open(pg_url, Identity.here("host-b"))
    try:
        assert upgraded.schema_found == 2
        assert list(upgraded.files()) == ["/srv/c/x.json"] and upgraded.log_position("h")
        assert other.files() == {} and other.log_position("h") is None
    finally:
        other.close()
        upgraded.close()


class PostgresBackendStatements:
    """Schema 1 and 2 as labelsync's PostgreSQL backend wrote them (its own DDL rules)."""

    @staticmethod
    def of(index: int, script: str) -> list[str]:
        from labelsync.state_postgres import PostgresBackend

        return PostgresBackend.migration(None, index, script)  # type: ignore[arg-type]
