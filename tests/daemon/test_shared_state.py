"""Several `labelsync run` daemons on one PostgreSQL state and one Label Studio project
behave as one labelsync: real processes, a real PostgreSQL, a real Label Studio.

- a conversation continued on other hosts (other watch directories) becomes v2, v3;
- one shared directory watched by three daemons: each conversation sent once;
- kill -9 of daemons in turn and a PostgreSQL restart under steady writers, and a
  network cut between one daemon and PostgreSQL: each (conversation, version) once,
  nothing missing;
- `labelsync run` started before PostgreSQL waits for it; `status` lists the daemons.

A network cut is made by a loopback TCP relay in front of PostgreSQL for one daemon
(the only fake here: a real server cannot be cut from one client on demand).
"""

from __future__ import annotations

import json
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import LABELSYNC, project_tasks, run
from tests.daemon.test_run import Daemon, chat, eventually
from tests.support.corpus import write_atomic
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.labelstudio

WAIT_S = 120.0


def lines_of(thread: str, turns: int, start: int = 0) -> str:
    out = []
    for n in range(start, start + turns):
        for role in ("user", "assistant"):
            out.append(json.dumps({"conversation_id": thread, "role": role, "content": f"{n}"}))
    return "\n".join(out) + "\n"


def turns_chat(thread: str, turns: int) -> dict[str, Any]:
    return chat(thread, *[f"{thread} question {n}" for n in range(turns)])


def versions(project: Any) -> Counter[tuple[str, int]]:
    """The project's (conversation, version) pairs; empty while Label Studio answers 500,
    which its task list does now and then while other tasks are being deleted (the check
    that polls this asks again)."""
    try:
        tasks = project_tasks(project)
    except httpx.HTTPStatusError as e:
        if e.response.status_code < 500:
            raise
        return Counter()
    return Counter((t["data"]["thread_id"], t["data"]["version"]) for t in tasks)


def assert_each_version_once(project: Any) -> list[dict[str, Any]]:
    """Every (conversation, version) and sync key once; versions 1..N without a gap."""
    tasks = project_tasks(project)
    counts = Counter((t["data"]["thread_id"], t["data"]["version"]) for t in tasks)
    assert max(counts.values()) == 1, sorted(k for k, n in counts.items() if n > 1)[:5]
    keys = Counter(t["data"]["sync_key"] for t in tasks)
    assert max(keys.values()) == 1
    numbers: dict[str, list[int]] = defaultdict(list)
    for thread, version in counts:
        numbers[thread].append(version)
    for thread, got in numbers.items():
        assert sorted(got) == list(range(1, len(got) + 1)), (thread, sorted(got))
    return tasks


def latest_turns(tasks: list[dict[str, Any]]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for t in tasks:
        thread = t["data"]["thread_id"]
        latest[thread] = max(latest.get(thread, 0), t["data"]["turn_count"])
    return latest


def sent_lines(daemon: Daemon) -> int:
    return sum(1 for line in daemon.output().splitlines() if " as version " in line)


def told_sent(daemons: list[Daemon], expected: int) -> int:
    """How many "sent ... as version" lines the daemons wrote, once they wrote at least
    `expected` (> 0): a task shows in Label Studio a moment before its daemon logs
    it (and records it just after)."""

    def told() -> int | None:
        n = sum(sent_lines(d) for d in daemons)
        return n if n >= expected else None

    return int(eventually(told, f"{expected} versions logged as sent; {logs_of(*daemons)}", 30))


@pytest.fixture
def shared(env: dict[str, str], pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """start(name, watch_dir, **settings): a `labelsync run` on the test's PostgreSQL state.

    Short deadlines so a daemon killed holds its claims for seconds, not minutes:
    lease = import deadline 10 s + request timeout 5 s + 5 s + 15 s = 35 s.
    """
    started: list[Daemon] = []

    def start(name: str, watch_dir: Path, **overrides: str) -> Daemon:
        watch_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "LABELSYNC_STATE_URL": pg_url,
            "LABELSYNC_DAEMON_NAME": name,
            "LABELSYNC_WATCH_DIR": str(watch_dir),
            "LABELSYNC_QUIET_SECONDS": "1",
            "LABELSYNC_RESCAN_SECONDS": "30",
            "LABELSYNC_TIMEOUT_SECONDS": "5",
            "LABELSYNC_IMPORT_TIMEOUT_SECONDS": "10",
            "LABELSYNC_STATE_TIMEOUT_SECONDS": "3",
            **overrides,
        }
        d = Daemon({**env, **settings}, tmp_path / f"daemon-{name}.log").start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()
            d.process.wait()


def wait_started(*daemons: Daemon) -> None:
    for d in daemons:
        eventually(lambda d=d: "watching" in d.output(), f"daemon starts:\n{d.output()[-2000:]}")


def logs_of(*daemons: Daemon) -> str:
    return "\n".join(f"--- {d.log.name}\n{d.output()[-1500:]}" for d in daemons)


# -- versions in order across hosts -------------------------------------------------------
def test_a_conversation_continued_on_other_hosts_becomes_v2_then_v3(shared, ls_project, tmp_path):
    """Each daemon watches a directory of its own (a host's disk); the bot's replicas
    write each conversation's next state on another host."""
    dirs = [tmp_path / f"host-{h}" for h in "abc"]
    daemons = [
        shared(f"host-{h}", d, LABELSYNC_KEEP_VERSIONS="true")
        for h, d in zip("abc", dirs, strict=True)
    ]
    wait_started(*daemons)
    threads = [f"moved-{n}" for n in range(12)]
    for hop, directory in enumerate(dirs):
        for thread in threads:
            write_atomic(directory / f"{thread}.json", turns_chat(thread, 2 + hop))
        expected = Counter({(t, v): 1 for t in threads for v in range(1, hop + 2)})
        eventually(
            lambda expected=expected: versions(ls_project) == expected,
            f"versions 1..{hop + 1} of each; logs:\n{logs_of(*daemons)}",
            WAIT_S,
        )
    tasks = assert_each_version_once(ls_project)
    for t in tasks:  # version N is the conversation as the N-th host had it
        assert t["data"]["turn_count"] == t["data"]["version"] + 1
    assert told_sent(daemons, 36) == 36  # nothing sent and then found twice

    status = json.loads(run(["status", "--json"], daemons[0].env).stdout)
    assert {d["name"] for d in status["daemons"]} == {"host-a", "host-b", "host-c"}
    assert {d["status"] for d in status["daemons"]} == {"running"}
    text = run(["status"], daemons[0].env).stdout
    assert "daemons:        3 seen in the last day" in text and "host-b (pid" in text
    for d in daemons:
        assert d.signal(signal.SIGTERM) == 0
    stopped = json.loads(run(["status", "--json"], daemons[0].env).stdout)
    assert {d["status"] for d in stopped["daemons"]} == {"stopped"}
    assert stopped["counts"]["tasks"] == 36  # recorded once each, whoever sent it


def test_earlier_versions_are_retired_whichever_host_sent_them(shared, ls_project, tmp_path):
    """By default one live task per conversation: the daemon sending v2 retires the v1
    another daemon sent (nobody worked on it)."""
    a, b = shared("host-a", tmp_path / "a"), shared("host-b", tmp_path / "b")
    wait_started(a, b)
    threads = [f"retire-{n}" for n in range(8)]
    for thread in threads:
        write_atomic(tmp_path / "a" / f"{thread}.json", turns_chat(thread, 2))
    eventually(
        lambda: versions(ls_project) == Counter({(t, 1): 1 for t in threads}),
        f"v1 of each; logs:\n{logs_of(a, b)}",
        WAIT_S,
    )
    for thread in threads:
        write_atomic(tmp_path / "b" / f"{thread}.json", turns_chat(thread, 3))
    eventually(
        lambda: versions(ls_project) == Counter({(t, 2): 1 for t in threads}),
        f"v2 of each, v1 retired; logs:\n{logs_of(a, b)}",
        WAIT_S,
    )
    # Each v1 retired once, by whichever daemon recorded it first (b sent v2; a may get
    # there): told once, whether the other deleted it or found it gone. Stopped first, so
    # a retirement recorded after the tasks were seen gone is in the output.
    for d in (a, b):
        assert d.signal(signal.SIGTERM) == 0
    assert sum(d.output().count("retired retire-") for d in (a, b)) == 8, logs_of(a, b)


# -- one shared directory --------------------------------------------------------------------
def test_one_shared_directory_watched_by_three_daemons_sends_each_conversation_once(
    shared, ls_project, tmp_path
):
    root = tmp_path / "shared"
    daemons = [shared(f"host-{h}", root, LABELSYNC_KEEP_VERSIONS="true") for h in "abc"]
    wait_started(*daemons)
    documents = [f"doc-{n}" for n in range(60)]
    for thread in documents:
        write_atomic(root / f"{thread}.json", turns_chat(thread, 2))
    with (root / "bot.jsonl").open("a") as log:
        for n in range(10):
            log.write(lines_of(f"log-{n}", 2))
    first = Counter({(t, 1): 1 for t in documents} | {(f"log-{n}", 1): 1 for n in range(10)})
    eventually(lambda: versions(ls_project) == first, f"v1 of each; {logs_of(*daemons)}", WAIT_S)
    for thread in documents[:20]:  # some grow: version 2
        write_atomic(root / f"{thread}.json", turns_chat(thread, 3))
    with (root / "bot.jsonl").open("a") as log:
        for n in range(5):
            log.write(lines_of(f"log-{n}", 1, start=2))
    second = first + Counter(
        {(t, 2): 1 for t in documents[:20]} | {(f"log-{n}", 2): 1 for n in range(5)}
    )
    eventually(lambda: versions(ls_project) == second, f"v2 of 25; {logs_of(*daemons)}", WAIT_S)
    assert_each_version_once(ls_project)
    # Each was imported by one daemon only: the others found it claimed, or sent.
    assert told_sent(daemons, 95) == 95


def test_two_backfills_of_one_directory_at_once_send_each_conversation_once(
    env, pg_url, ls_project, tmp_path
):
    """Two hosts backfill the same (shared) directory at the same moment: a conversation
    the other holds is waited for, then found sent; both finish, nothing is left."""
    root = tmp_path / "shared"
    root.mkdir()
    for n in range(150):
        write_atomic(root / f"b-{n}.json", turns_chat(f"b-{n}", 2))
    runs = [
        subprocess.Popen(
            [*LABELSYNC, "backfill"],
            env={
                **env,
                "LABELSYNC_STATE_URL": pg_url,
                "LABELSYNC_DAEMON_NAME": name,
                "LABELSYNC_WATCH_DIR": str(root),
                "LABELSYNC_BATCH_SIZE": "10",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("host-a", "host-b")
    ]
    outputs = [p.communicate(timeout=600) for p in runs]
    for p, (out, err) in zip(runs, outputs, strict=True):
        assert p.returncode == 0, out + err
    assert versions(ls_project) == Counter({(f"b-{n}", 1): 1 for n in range(150)})

    def figure(out: str, label: str) -> int:
        found = re.search(re.escape(label) + r"\s*│\s*(\d+)", out)
        assert found, out
        return int(found.group(1))

    summaries = [err for _, err in outputs]  # the backfill's table goes to stderr
    assert sum(figure(s, "new conversations (version 1)") for s in summaries) == 150
    assert [figure(s, "held by another labelsync (next run)") for s in summaries] == [0, 0]


# -- faults under steady writers ----------------------------------------------------------------
class Writers:
    """Bots on three hosts: each conversation grows, each new state written on a host
    picked at random (a load balancer without sticky sessions)."""

    def __init__(self, dirs: list[Path], conversations: int, seed: int) -> None:
        self.dirs = dirs
        self.turns: dict[str, int] = {}
        self.stop = threading.Event()
        self.rng = random.Random(seed)
        self.names = [f"w-{n}" for n in range(conversations)]
        self.thread = threading.Thread(target=self._write)

    def __enter__(self) -> Writers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _write(self) -> None:
        while not self.stop.is_set():
            thread = self.rng.choice(self.names)
            self.turns[thread] = self.turns.get(thread, 1) + 1
            directory = self.rng.choice(self.dirs)
            write_atomic(directory / f"{thread}.json", turns_chat(thread, self.turns[thread]))
            self.stop.wait(0.05)


def test_kill_9_of_daemons_in_turn_and_a_postgresql_restart_under_steady_writers(
    shared, ls_project, tmp_path, postgres: PostgresServer
):
    dirs = [tmp_path / f"host-{h}" for h in "abc"]
    settings = {
        "LABELSYNC_KEEP_VERSIONS": "true",
        "LABELSYNC_QUIET_SECONDS": "0.5",
        "LABELSYNC_BATCH_SIZE": "5",
    }
    daemons = {h: shared(f"host-{h}", d, **settings) for h, d in zip("abc", dirs, strict=True)}
    wait_started(*daemons.values())
    rng = random.Random(10)
    with Writers(dirs, 30, seed=10) as writers:
        for round_ in range(6):
            time.sleep(rng.uniform(1.5, 3.0))
            if round_ == 3:
                postgres.restart()  # every daemon's connections end at once
                continue
            host = "abc"[round_ % 3]
            daemons[host].signal(signal.SIGKILL)
            daemons[host] = shared(f"host-{host}", dirs["abc".index(host)], **settings)
    final = dict(writers.turns)

    def complete() -> bool:
        return latest_turns(project_tasks(ls_project)) == final

    eventually(
        complete, f"the last state of {len(final)} conversations; {logs_of(*daemons.values())}", 300
    )
    assert_each_version_once(ls_project)
    outputs = "\n".join(d.output() for d in daemons.values())
    assert "trying again" in outputs  # the restart was noticed, and waited out
    for d in daemons.values():
        assert d.process is not None and d.process.poll() is None  # none gave up
        assert d.signal(signal.SIGTERM) == 0


class Relay:
    """A loopback TCP relay to PostgreSQL for one daemon, which the test can cut.

    `hold()`: a silent cut: bytes stop flowing both ways, connections stay open (as
    when a route goes away; a daemon's queries hang). `release()` lets the held bytes
    through, as a healed network does. `reset()`: every connection ends at once and new
    ones are refused until `release()`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = False
        self.closed = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        return url.replace(f":{self.upstream[1]}/", f":{self.port}/")

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        raise OSError("closed")
                    self.flowing.wait()  # a silent cut holds what was read
                    (b if source is a else a).sendall(data)
        except OSError:
            for s in (a, b):
                s.close()

    def hold(self) -> None:
        self.flowing.clear()

    def reset(self) -> None:
        self.refusing = True
        for a, b in self.pairs:
            _reset(a)
            b.close()
        self.pairs.clear()
        self.flowing.set()

    def release(self) -> None:
        self.refusing = False
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.release()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    """Close with a RST, as a router dropping the connection would end it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


@pytest.mark.parametrize("cut", ["silent", "reset"])
def test_a_network_cut_between_one_daemon_and_postgresql(
    shared, ls_project, tmp_path, postgres: PostgresServer, pg_url: str, cut: str
):
    """Three daemons on one shared directory; host-a reaches PostgreSQL through a relay
    that is cut for longer than a lease while bots keep writing. The others carry on,
    take over what host-a held once its lease is over; host-a waits, then carries on."""
    root = tmp_path / "shared"
    relay = Relay(postgres.port)
    settings = {
        "LABELSYNC_KEEP_VERSIONS": "true",
        "LABELSYNC_QUIET_SECONDS": "0.5",
        "LABELSYNC_BATCH_SIZE": "5",
    }
    try:
        a = shared("host-a", root, LABELSYNC_STATE_URL=relay.url(pg_url), **settings)
        b = shared("host-b", root, **settings)
        c = shared("host-c", root, **settings)
        wait_started(a, b, c)
        with Writers([root], 25, seed=4) as writers:
            time.sleep(3)
            relay.hold() if cut == "silent" else relay.reset()
            time.sleep(45)  # longer than a lease (35 s): b and c take over what a held
            relay.release()
            time.sleep(3)
        final = dict(writers.turns)
        eventually(
            lambda: latest_turns(project_tasks(ls_project)) == final,
            f"the last state of {len(final)} conversations; {logs_of(a, b, c)}",
            300,
        )
        assert_each_version_once(ls_project)

        def a_is_back() -> bool:  # its row is published again, by its working loop
            daemons = json.loads(run(["status", "--json"], b.env).stdout)["daemons"]
            return any(d["name"] == "host-a" and d["seen_s_ago"] < 6 for d in daemons)

        eventually(a_is_back, f"host-a works again after the cut; {logs_of(a)}", 60)
        for d in (a, b, c):
            assert d.process is not None and d.process.poll() is None
            assert d.signal(signal.SIGTERM) == 0
    finally:
        relay.close()


# -- start-up ----------------------------------------------------------------------------------
def test_run_started_before_postgresql_waits_for_it(
    shared, ls_project, tmp_path, postgres: PostgresServer
):
    with postgres.stopped():
        d = shared("host-a", tmp_path / "a")
        eventually(lambda: "trying again" in d.output(), f"the daemon waits:\n{d.output()}")
        write_atomic(tmp_path / "a" / "early.json", turns_chat("early", 2))
        time.sleep(2)
        assert d.process is not None and d.process.poll() is None  # not exit 2
    eventually(lambda: versions(ls_project) == Counter({("early", 1): 1}), d.output(), WAIT_S)
    assert d.signal(signal.SIGTERM) == 0
