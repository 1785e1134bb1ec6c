"""kill -9 at any instant, then a rerun: every (conversation, version) exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.daemon.conftest import LABELSYNC, project_tasks, run
from tests.support.corpus import conversation, write_atomic, write_corpus
from tests.support.faultproxy import Fault, FaultProxy


def assert_exactly_once(project, expected: set[tuple[str, int]]) -> None:
    tasks = project_tasks(project)
    counts = Counter((t["data"]["thread_id"], t["data"]["version"]) for t in tasks)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    assert not duplicated, f"duplicated: {sorted(duplicated)[:5]}"
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:5]}"
    keys = Counter(t["data"]["sync_key"] for t in tasks)
    assert max(keys.values()) == 1


def test_kill_9_at_random_instants_then_rerun(env, ls_project):
    root = Path(env["LABELSYNC_WATCH_DIR"])
    paths = write_corpus(root, 1200)
    env = {**env, "LABELSYNC_BATCH_SIZE": "10", "LABELSYNC_TIMEOUT_SECONDS": "2"}
    rng = random.Random(20261124)
    grown: set[str] = set()
    kills = 0
    for round_ in range(6):
        process = subprocess.Popen(
            [*LABELSYNC, "backfill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.6, 1.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        # Writers keep going between crashes: some conversations grow (version 2).
        for path in rng.sample(paths, 10):
            thread = path.stem.removeprefix("conversation_")
            write_atomic(path, conversation(thread, 7, random.Random(round_)))
            grown.add(thread)
    assert kills >= 3, "the runs finished before they could be killed; raise the file count"
    final = run(["backfill"], env)
    assert final.returncode == 0, final.stderr

    expected = {(p.stem.removeprefix("conversation_"), 1) for p in paths}
    expected |= {(thread, 2) for thread in grown}
    # A conversation grown twice before it was first sent has only a version 1; one grown
    # after v2 was sent has a v3: accept exactly what the state says was sent, and check
    # Label Studio holds each of those once and nothing else.
    status = run(["status", "--json"], env)
    assert status.returncode == 0
    sent = {(t["data"]["thread_id"], t["data"]["version"]) for t in project_tasks(ls_project)}
    assert {thread for thread, _ in sent} == {thread for thread, _ in expected}
    assert_exactly_once(ls_project, sent)


def test_kill_9_after_label_studio_imported_but_before_the_state_knew(env, ls_project):
    """The hardest instant: the import is done in Label Studio, the answer never arrives."""
    root = Path(env["LABELSYNC_WATCH_DIR"])
    paths = write_corpus(root, 30)
    env = {**env, "LABELSYNC_BATCH_SIZE": "30", "LABELSYNC_TIMEOUT_SECONDS": "2"}
    with FaultProxy(ls_project.url) as proxy:
        proxy.add(
            Fault("POST", f"/api/projects/{ls_project.id}/import", "forward_then_hang", hang_s=60)
        )
        process = subprocess.Popen(
            [*LABELSYNC, "backfill"],
            env={**env, "LABEL_STUDIO_URL": proxy.url, "LABELSYNC_TIMEOUT_SECONDS": "120"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proxy.forwarded.wait(120), "the import never reached Label Studio"
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert len(project_tasks(ls_project)) == 30  # imported, but labelsync never heard back

    rerun = run(["backfill"], env)
    assert rerun.returncode == 0, rerun.stderr
    assert "recovered from Label Studio" in rerun.stdout + rerun.stderr
    assert_exactly_once(ls_project, {(p.stem.removeprefix("conversation_"), 1) for p in paths})


def event_lines(thread: str, start: int, turns: int) -> str:
    out = []
    for t in range(start, start + turns):
        out.append(json.dumps({"conversation_id": thread, "role": "user", "content": f"q{t}"}))
        out.append(json.dumps({"conversation_id": thread, "role": "assistant", "content": f"a{t}"}))
    return "\n".join(out) + "\n"


def test_kill_9_during_exports_and_logs_then_rerun(env, ls_project):
    """Many conversations per file (an export, a message log): kill -9 at random instants."""
    root = Path(env["LABELSYNC_WATCH_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    export = root / "conversations.json"
    export.write_text(
        json.dumps([conversation(f"exp-{i}", 2, random.Random(i), "openai") for i in range(600)])
    )
    log = root / "bot.jsonl"
    rng = random.Random(20261125)
    turns: dict[str, int] = {}
    with log.open("w") as f:
        for i in range(600):
            thread = f"log-{i % 300}"
            f.write(event_lines(thread, turns.get(thread, 0), 1))
            turns[thread] = turns.get(thread, 0) + 1
    env = {**env, "LABELSYNC_BATCH_SIZE": "10", "LABELSYNC_TIMEOUT_SECONDS": "2"}
    kills = 0
    for _ in range(6):
        process = subprocess.Popen(
            [*LABELSYNC, "backfill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.6, 1.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        # The bot keeps appending between crashes: some conversations grow.
        with log.open("a") as f:
            for thread in rng.sample(sorted(turns), 10):
                f.write(event_lines(thread, turns[thread], 1))
                turns[thread] += 1
    assert kills >= 3, "the runs finished before they could be killed; raise the counts"
    final = run(["backfill"], env)
    assert final.returncode == 0, final.stderr

    tasks = project_tasks(ls_project)
    assert {t["data"]["thread_id"] for t in tasks} == {f"exp-{i}" for i in range(600)} | set(turns)
    sent = {(t["data"]["thread_id"], t["data"]["version"]) for t in tasks}
    assert_exactly_once(ls_project, sent)
    latest: dict[str, int] = {}
    for t in tasks:
        thread = t["data"]["thread_id"]
        latest[thread] = max(latest.get(thread, 0), t["data"]["turn_count"])
    assert all(latest[thread] == n for thread, n in turns.items())  # every line arrived
