"""`labelsync run` as a process: real files, a real watcher, a real Label Studio."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import LABELSYNC, project_tasks, run
from tests.support.corpus import conversation, write_atomic, write_corpus
from tests.support.labelstudio import free_port

WAIT_S = 60.0  # generous: how long a test waits for something that should happen


def chat(thread: str, *questions: str, **extra: Any) -> dict[str, Any]:
    messages = []
    for q in questions:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": f"A: {q}"}]
    return {"thread_id": thread, "messages": messages, **extra}


class Daemon:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.env, self.log, self.args = env, log, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*LABELSYNC, "run", *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=WAIT_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    Path(env["LABELSYNC_WATCH_DIR"]).mkdir(parents=True, exist_ok=True)
    started: list[Daemon] = []

    def start(*args: str, **overrides: str) -> Daemon:
        settings = {
            "LABELSYNC_QUIET_SECONDS": "1",
            "LABELSYNC_RESCAN_SECONDS": "30",
            "LABELSYNC_TIMEOUT_SECONDS": "5",
            **overrides,
        }
        d = Daemon({**env, **settings}, tmp_path / "daemon.log", *args).start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()
            d.process.wait()


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)


def versions(project: Any) -> Counter[tuple[str, int]]:
    return Counter((t["data"]["thread_id"], t["data"]["version"]) for t in project_tasks(project))


def settled(daemon: Daemon, project: Any, expected: dict[tuple[str, int], int]) -> None:
    """Wait until Label Studio holds exactly `expected`, then make sure it stays so."""
    eventually(
        lambda: versions(project) == Counter(expected),
        f"tasks {sorted(expected)}; log:\n{daemon.output()[-2000:]}",
    )


def root_of(env: dict[str, str]) -> Path:
    return Path(env["LABELSYNC_WATCH_DIR"])


def test_every_way_a_bot_writes_a_file_ends_as_one_task(daemon, env, ls_project):
    root = root_of(env)
    d = daemon()
    eventually(lambda: "watching" in d.output(), "the daemon starts")

    write_atomic(root / "atomic.json", chat("atomic", "q1", "q2"))  # temp + rename
    with open(root / "inplace.json", "w") as handle:  # written in pieces, in place
        text = json.dumps(chat("inplace", "q1", "q2"))
        for i in range(0, len(text), 40):
            handle.write(text[i : i + 40])
            handle.flush()
            time.sleep(0.02)
    (root / "truncated.json").write_text(json.dumps(chat("truncated", "old", "old")))
    with open(root / "truncated.json", "r+") as handle:  # truncate, then write
        handle.truncate(0)
        handle.flush()
        time.sleep(0.1)
        handle.write(json.dumps(chat("truncated", "new", "new")))
    for i in range(40):  # many rewrites a second: only the last content counts
        write_atomic(root / "busy.json", chat("busy", *[f"q{j}" for j in range(2 + i // 10)]))
        time.sleep(0.02)
    (root / ".hidden.json").write_text(json.dumps(chat("hidden", "a", "b")))
    (root / "draft.json~").write_text(json.dumps(chat("backup", "a", "b")))
    (root / "notes.txt").write_text("not a conversation")
    doomed = root / "doomed.json"
    write_atomic(doomed, chat("doomed", "a", "b"))
    doomed.unlink()  # deleted before it settled: dropped

    settled(
        d, ls_project, {("atomic", 1): 1, ("inplace", 1): 1, ("truncated", 1): 1, ("busy", 1): 1}
    )
    busy = next(t for t in project_tasks(ls_project) if t["data"]["thread_id"] == "busy")
    assert len(busy["data"]["chat"]) == 10  # the final content, 5 turns
    truncated = next(t for t in project_tasks(ls_project) if t["data"]["thread_id"] == "truncated")
    assert truncated["data"]["chat"][0]["content"] == "new"

    # Renamed after it was sent: same conversation, same content, nothing new.
    (root / "atomic.json").rename(root / "atomic-renamed.json")
    # Grown after it was sent: version 2, and version 1 (nobody rated it) is retired.
    # Rewritten identically: nothing.
    write_atomic(root / "inplace.json", chat("inplace", "q1", "q2", "q3"))
    write_atomic(root / "truncated.json", chat("truncated", "new", "new"))
    settled(
        d,
        ls_project,
        {
            ("atomic", 1): 1,
            ("inplace", 2): 1,
            ("truncated", 1): 1,
            ("busy", 1): 1,
        },
    )
    assert d.signal(signal.SIGTERM) == 0


def test_short_and_malformed_files_do_not_stop_the_daemon(daemon, env, ls_project):
    root = root_of(env)
    port = free_port()
    d = daemon("--log-format", "json", LABELSYNC_METRICS_ADDR=f"127.0.0.1:{port}")
    write_atomic(root / "short.json", chat("short", "just one"))
    (root / "broken.json").write_text('{"messages": [{"role": "user", "content": ')
    write_atomic(root / "good.json", chat("good", "a", "b"))
    settled(d, ls_project, {("good", 1): 1})
    status = eventually(
        lambda: (s := json.loads(run(["status", "--json"], env).stdout))["quarantined"] and s,
        "the malformed file shows as quarantined",
    )
    assert status["quarantined"][0]["path"].endswith("broken.json")
    assert status["waiting"][0]["path"].endswith("short.json")
    assert status["daemon"]["status"] == "running"

    write_atomic(root / "short.json", chat("short", "just one", "and two"))
    write_atomic(root / "broken.json", chat("fixed", "a", "b"))
    settled(d, ls_project, {("good", 1): 1, ("short", 1): 1, ("fixed", 1): 1})

    def counted() -> str | None:  # at the end of the round that sent them, a moment later
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return metrics if "labelsync_tasks_created_total 3.0" in metrics else None

    metrics = eventually(counted, "three tasks counted in the metrics")
    assert "labelsync_quarantined_total 1.0" in metrics
    assert d.signal(signal.SIGINT) == 0
    lines = [json.loads(line) for line in d.output().splitlines() if line.strip()]
    assert any("quarantined" in entry["msg"] and "broken.json" in entry["msg"] for entry in lines)
    assert env["LABEL_STUDIO_API_KEY"] not in d.output()


def test_files_written_while_the_daemon_was_down_are_found_at_start(daemon, env, ls_project):
    root = root_of(env)
    write_corpus(root, 15)
    d = daemon()
    settled(
        d, ls_project, {(p.stem.removeprefix("conversation_"), 1): 1 for p in root.glob("*.json")}
    )
    assert d.signal(signal.SIGTERM) == 0


def test_a_conversation_that_never_pauses_is_sent_after_max_wait(daemon, env, ls_project):
    root = root_of(env)
    d = daemon(LABELSYNC_QUIET_SECONDS="5", LABELSYNC_MAX_WAIT_SECONDS="6")
    eventually(lambda: "watching" in d.output(), "the daemon starts")
    stop = threading.Event()

    def chatter() -> None:
        turns = 2
        while not stop.is_set():
            write_atomic(root / "endless.json", chat("endless", *[f"q{i}" for i in range(turns)]))
            turns += 1
            stop.wait(0.5)

    writer = threading.Thread(target=chatter)
    writer.start()
    try:
        eventually(
            lambda: ("endless", 1) in versions(ls_project),
            "a task while the file still changes every 0.5 s",
        )
        assert writer.is_alive()
    finally:
        stop.set()
        writer.join()
    assert d.signal(signal.SIGTERM) == 0


def test_an_ended_conversation_does_not_wait_for_the_quiet_period(daemon, env, ls_project):
    root = root_of(env)
    d = daemon(LABELSYNC_QUIET_SECONDS="600", LABELSYNC_SETTLE_SECONDS="1")
    eventually(lambda: "watching" in d.output(), "the daemon starts")
    write_atomic(root / "open.json", chat("open", "a", "b"))
    write_atomic(root / "over.json", chat("over", "a", "b", ended=True))
    # With a 10-minute quiet period only the ended one can be there now.
    settled(d, ls_project, {("over", 1): 1})
    assert ("open", 1) not in versions(ls_project)
    assert d.signal(signal.SIGTERM) == 0


def test_polling_mode_sees_files_too(daemon, env, ls_project):
    root = root_of(env)
    d = daemon("--polling", LABELSYNC_POLLING_INTERVAL_SECONDS="0.5")
    eventually(lambda: "polling" in d.output(), "the daemon starts in polling mode")
    write_atomic(root / "polled.json", chat("polled", "a", "b"))
    settled(d, ls_project, {("polled", 1): 1})
    assert d.signal(signal.SIGTERM) == 0


def test_label_studio_outage_loses_nothing(daemon, env, ls_project, label_studio):
    root = root_of(env)
    d = daemon()
    write_atomic(root / "before.json", chat("before", "a", "b"))
    settled(d, ls_project, {("before", 1): 1})
    with label_studio.stopped():
        for i in range(10):
            write_atomic(root / f"during-{i}.json", chat(f"during-{i}", "a", "b"))
        eventually(lambda: "retrying in" in d.output(), "the daemon notices the outage")
        assert d.process is not None and d.process.poll() is None  # still running
    expected = {("before", 1): 1} | {(f"during-{i}", 1): 1 for i in range(10)}
    settled(d, ls_project, expected)
    assert d.signal(signal.SIGTERM) == 0


def test_kill_9_while_writers_are_busy_then_restart(daemon, env, ls_project):
    root = root_of(env)
    rng = random.Random(3)
    stop = threading.Event()
    final: dict[str, int] = {}

    def writer(n: int) -> None:
        turns: dict[str, int] = {}
        while not stop.is_set():
            thread = f"w{n}-{rng.randrange(15)}"
            turns[thread] = turns.get(thread, 1) + 1
            write_atomic(
                root / f"{thread}.json",
                conversation(thread, turns[thread], random.Random(turns[thread])),
            )
            final[thread] = turns[thread]
            stop.wait(0.05)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for w in writers:
        w.start()
    try:
        for _ in range(4):
            d = daemon(
                LABELSYNC_QUIET_SECONDS="0.3",
                LABELSYNC_BATCH_SIZE="5",
                LABELSYNC_KEEP_VERSIONS="true",  # every version stays, to count them
            )
            time.sleep(rng.uniform(1.5, 3.0))
            d.signal(signal.SIGKILL)
    finally:
        stop.set()
        for w in writers:
            w.join()
    d = daemon(LABELSYNC_QUIET_SECONDS="0.3", LABELSYNC_KEEP_VERSIONS="true")

    # Every conversation's final content ends up in Label Studio, each version once.
    def complete() -> bool:
        tasks = project_tasks(ls_project)
        latest: dict[str, int] = {}
        for t in tasks:
            latest[t["data"]["thread_id"]] = max(
                latest.get(t["data"]["thread_id"], 0), t["data"]["turn_count"]
            )
        return latest == final

    eventually(
        complete, f"final contents of {len(final)} conversations; log:\n{d.output()[-2000:]}"
    )
    counts = versions(ls_project)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    keys = Counter(t["data"]["sync_key"] for t in project_tasks(ls_project))
    assert max(keys.values()) == 1
    for thread in final:  # versions are numbered 1..N without a gap
        numbers = sorted(v for t, v in counts if t == thread)
        assert numbers == list(range(1, len(numbers) + 1))
    assert d.signal(signal.SIGTERM) == 0


def test_systemd_notify_protocol_through_a_real_socket(daemon, env, ls_project, tmp_path):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(WAIT_S)
    d = daemon(NOTIFY_SOCKET=address, WATCHDOG_USEC="1000000")
    messages: list[str] = []

    def receive_until(prefix: str) -> str:
        while True:
            message = sock.recv(4096).decode()
            messages.append(message)
            if message.startswith(prefix) or f"\n{prefix}" in message:
                return message

    ready = receive_until("READY=1")
    assert "STATUS=" in ready
    write_atomic(root_of(env) / "n.json", chat("n", "a", "b"))
    receive_until("WATCHDOG=1")
    eventually(lambda: ("n", 1) in versions(ls_project), "the file is sent")
    receive_until("STATUS=0 waiting, 1 new tasks")
    assert d.signal(signal.SIGTERM) == 0
    receive_until("STOPPING=1")
    sock.close()
    os.unlink(address)


def test_a_refused_key_is_reported_loudly_and_the_daemon_keeps_running(daemon, env, ls_project):
    revoked = "revoked-key-0f1e2d3c4b5a"
    d = daemon(LABEL_STUDIO_API_KEY=revoked)
    write_atomic(root_of(env) / "kept.json", chat("kept", "a", "b"))
    eventually(lambda: "LABEL_STUDIO_API_KEY" in d.output(), "the refused key is logged")

    def daemon_status() -> dict[str, Any] | None:
        status = json.loads(run(["status", "--json"], env).stdout)["daemon"]
        return status if status and status.get("last_error") and status["backlog"] else None

    status = eventually(daemon_status, "status shows the error and the waiting file")
    assert "HTTP 401" in status["last_error"] and revoked not in status["last_error"]
    assert d.process is not None and d.process.poll() is None  # no crash, no restart loop
    assert project_tasks(ls_project) == []
    assert d.signal(signal.SIGTERM) == 0
    assert revoked not in d.output()


def test_a_log_appended_while_the_daemon_runs_survives_kill_9(daemon, env, ls_project):
    """A bot appends message lines; each conversation settles on its own and is sent once."""
    root = root_of(env)
    log = root / "bot.jsonl"
    rng = random.Random(8)
    stop = threading.Event()
    final: dict[str, int] = {}  # conversation -> messages written

    def writer() -> None:
        with open(log, "a", buffering=1) as out:
            while not stop.is_set():
                thread = f"c{rng.randrange(30)}"
                n = final.get(thread, 0)
                role = "user" if n % 2 == 0 else "assistant"
                line = {"conversation_id": thread, "role": role, "content": f"{thread} {n}"}
                out.write(json.dumps(line) + "\n")
                final[thread] = n + 1
                stop.wait(0.01)

    bot = threading.Thread(target=writer)
    bot.start()
    try:
        for _ in range(4):
            d = daemon(
                LABELSYNC_QUIET_SECONDS="0.5",
                LABELSYNC_MIN_TURNS="1",
                LABELSYNC_KEEP_VERSIONS="true",
            )
            time.sleep(rng.uniform(1.5, 3.0))
            d.signal(signal.SIGKILL)
    finally:
        stop.set()
        bot.join()
    d = daemon(
        LABELSYNC_QUIET_SECONDS="0.5", LABELSYNC_MIN_TURNS="1", LABELSYNC_KEEP_VERSIONS="true"
    )

    def complete() -> bool:
        latest: dict[str, int] = {}
        for t in project_tasks(ls_project):
            thread = t["data"]["thread_id"]
            latest[thread] = max(latest.get(thread, 0), len(t["data"]["chat"]))
        return latest == final

    eventually(complete, f"the last line of {len(final)} conversations; log:\n{d.output()[-2000:]}")
    counts = versions(ls_project)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    keys = Counter(t["data"]["sync_key"] for t in project_tasks(ls_project))
    assert max(keys.values()) == 1
    for t in project_tasks(ls_project):  # every message in the order it was written
        thread = t["data"]["thread_id"]
        assert [m["content"] for m in t["data"]["chat"]] == [
            f"{thread} {i}" for i in range(len(t["data"]["chat"]))
        ]
    assert d.signal(signal.SIGTERM) == 0


def test_a_watch_directory_swapped_by_rename_is_watched_again_at_once(daemon, env, ls_project):
    """A deploy that swaps folders: the old inode keeps the inotify watch; the new one
    must be noticed and watched without waiting for the rescan (300 s here)."""
    root = root_of(env)
    d = daemon(LABELSYNC_RESCAN_SECONDS="300")
    eventually(lambda: "watching" in d.output(), "the daemon starts")
    fresh = root.with_name("conversations.new")
    fresh.mkdir()
    write_atomic(fresh / "before.json", chat("before", "q1", "q2"))
    root.rename(root.with_name("conversations.old"))
    fresh.rename(root)
    write_atomic(root / "after.json", chat("after", "q1", "q2"))
    settled(d, ls_project, {("before", 1): 1, ("after", 1): 1})
    assert "watching it again" in d.output()
    assert d.signal(signal.SIGTERM) == 0


def test_lost_file_events_are_noticed_and_rescanned_at_once(daemon, env, ls_project):
    """inotify drops events when its queue overflows; labelsync hears of it and rescans
    instead of leaving the files for the next rescan (300 s here)."""
    limit = Path("/proc/sys/fs/inotify/max_queued_events")
    before = limit.read_text()
    try:
        limit.write_text("64")  # read by each new inotify instance: the daemon's
    except OSError:
        pytest.skip("cannot lower the inotify queue here to make it overflow")
    try:
        d = daemon(LABELSYNC_RESCAN_SECONDS="300", LABELSYNC_QUIET_SECONDS="0.5")
        eventually(lambda: "watching" in d.output(), "the daemon starts")
    finally:
        limit.write_text(before)
    root = root_of(env)
    for i in range(600):
        write_atomic(root / f"burst-{i}.json", chat(f"burst-{i}", "q1", "q2"))
    eventually(
        lambda: len(project_tasks(ls_project)) == 600,
        f"all 600 conversations; log:\n{d.output()[-2000:]}",
        timeout=120,
    )
    assert "events were lost" in d.output()
    assert d.signal(signal.SIGTERM) == 0
