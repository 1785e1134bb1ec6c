"""Whatever lands in the watch directory, it can only cost itself.

Generated entries of every kind (bytes, JSON edge cases, special files, odd
names, permissions) go beside good conversation files; then `labelsync
backfill` and `labelsync run` must stay up, send every good conversation
exactly once, and give every bad entry a reason. A model-based test applies
random file operations (write, append, rename, truncate, delete, swap the
directory) and checks that Label Studio ends up holding what the model says.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon.conftest import project_tasks, run
from tests.daemon.test_run import Daemon, eventually

# Each kind of bad entry, and how to make it. A maker returns the path it made,
# the file name as `status` shows it.
BAD_JSON = [
    b"",
    b"\xff\xfe\x00garbage",
    b"{" * 10_000,
    b'{"messages": [{"role": "user", "content": "x"}], "n": ' + b"9" * 5000 + b"}",
    b'{"messages": "hello"}',
    b'{"messages": [null, 1, "x"]}',
    b'{"messages": [{"role": ["user"], "content": {"nested": true}}]}',
    b'{"messages": [{"role": "user", "content": "hi", "feedback": {"score": [1]}}]}',
    b'{"thread_id": {"x": 1}, "messages": [{"role": "user"}]}',
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    b'{"messages": [{"role": "user", "content": NaN}]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"mapping": {"a": {"parent": "a", "children": ["a"]}}, "current_node": "a"}',
    b'{"chat_messages": [{"sender": 5}]}',
    b'{"chat": {"history": {"messages": {"a": {"parentId": "a"}}, "currentId": "a"}}}',
]


def make_bad(root: Path, kind: str, index: int, outside: Path) -> str:
    name = f"bad-{index}-{kind}.json"
    path = root / name
    if kind.startswith("json-"):
        path.write_bytes(BAD_JSON[int(kind[5:])])
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "directory":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "broken-link":
        path.symlink_to(root / "nowhere.json")
    elif kind == "link-out":
        path.symlink_to(outside)
    elif kind == "link-to-dir":
        (root / f"d-{index}").mkdir()
        path.symlink_to(root / f"d-{index}")
    elif kind == "newline-name":
        path = root / f"bad-{index}\nforged log line.json"
        path.write_text("{nope")
    elif kind == "undecodable-name":
        raw = os.fsencode(root) + f"/bad-{index}-".encode() + b"\xff.json"
        path = Path(os.fsdecode(raw))
        path.write_text("{}")
    elif kind == "long-name":
        path = root / (f"bad-{index}-" + "x" * 230 + ".json")
        path.write_text("[]")
    elif kind == "jsonl-garbage":
        path = root / f"bad-{index}.jsonl"
        path.write_bytes(b'not json\n\xff\xfe\n[1]\n{"conversation_id": 5}\n')
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


KINDS = [f"json-{i}" for i in range(len(BAD_JSON))] + [
    "fifo",
    "socket",
    "directory",
    "loop",
    "broken-link",
    "link-out",
    "link-to-dir",
    "newline-name",
    "undecodable-name",
    "long-name",
    "jsonl-garbage",
]


def good(thread: str, turns: int = 2) -> dict[str, Any]:
    messages = []
    for t in range(turns):
        messages += [
            {"role": "user", "content": f"{thread} question {t}"},
            {"role": "assistant", "content": f"{thread} answer {t}"},
        ]
    return {"thread_id": thread, "messages": messages}


def reported(env: dict[str, str]) -> dict[str, str]:
    """file name -> reason, for every problem `labelsync status` lists."""
    result = run(["status", "--json", "--all"], env)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    problems = {}
    for key in ("quarantined", "rejected", "skipped", "too_short", "waiting"):
        for row in status[key]:
            problems[Path(row["path"]).name] = row["reason"]
    return problems


def assert_good_once(project: Any, threads: set[str]) -> None:
    tasks = project_tasks(project)
    counts = Counter(t["data"]["thread_id"] for t in tasks)
    assert set(counts) == threads, f"missing {threads - set(counts)}, extra {set(counts) - threads}"
    assert max(counts.values()) == 1


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=3, max_size=10, unique=True))
def test_backfill_sends_every_good_file_once_and_names_every_bad_entry(
    kinds, env, ls_project, tmp_path_factory
):
    work = tmp_path_factory.mktemp("adversarial")
    root, outside = work / "watch", work / "secret.json"
    root.mkdir()
    outside.write_text(json.dumps(good("secret")))
    env = {**env, "LABELSYNC_WATCH_DIR": str(root), "LABELSYNC_STATE_DIR": str(work / "state")}
    threads = {f"good-{work.name}-{i}" for i in range(3)}
    for thread in threads:
        (root / f"{thread}.json").write_text(json.dumps(good(thread)))
    bad = {make_bad(root, kind, i, outside) for i, kind in enumerate(kinds)}

    result = run(["backfill"], env, timeout=120)
    assert result.returncode == 1, result.stderr  # some entries were not sent
    assert "Traceback" not in result.stderr
    assert_good_once_among(ls_project, threads)
    problems = reported(env)
    for name in bad:
        assert name in problems, f"{name!r} has no reason; reported: {sorted(problems)}"
        assert problems[name] and "\n" not in problems[name]
    assert "secret" not in {t["data"]["thread_id"] for t in project_tasks(ls_project)}
    # Nothing changed: a second run sends nothing and still exits 1.
    again = run(["backfill"], env, timeout=120)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert_good_once_among(ls_project, threads)


def assert_good_once_among(project: Any, threads: set[str]) -> None:
    """These threads each exactly once (the project also holds other examples' tasks)."""
    counts = Counter(t["data"]["thread_id"] for t in project_tasks(project))
    assert all(counts[t] == 1 for t in threads), {t: counts[t] for t in threads}


def test_the_daemon_stays_up_beside_every_kind_of_bad_entry_and_stops_on_sigterm(
    env, ls_project, tmp_path
):
    root, outside = Path(env["LABELSYNC_WATCH_DIR"]), tmp_path / "secret.json"
    root.mkdir(parents=True, exist_ok=True)
    outside.write_text(json.dumps(good("secret")))
    bad = {make_bad(root, kind, i, outside) for i, kind in enumerate(KINDS[:8])}  # at start
    (root / "early.json").write_text(json.dumps(good("early")))
    d = Daemon(
        {**env, "LABELSYNC_QUIET_SECONDS": "0.5", "LABELSYNC_RESCAN_SECONDS": "2"},
        tmp_path / "daemon.log",
    ).start()
    try:
        eventually(lambda: "watching" in d.output(), "the daemon starts")
        bad |= {make_bad(root, kind, 100 + i, outside) for i, kind in enumerate(KINDS[8:])}
        (root / "late.json").write_text(json.dumps(good("late")))
        eventually(
            lambda: (
                {t["data"]["thread_id"] for t in project_tasks(ls_project)} == {"early", "late"}
            ),
            f"the good files arrive; log:\n{d.output()[-3000:]}",
        )
        eventually(lambda: bad <= set(reported(env)), "every bad entry has a reason")
        assert d.process is not None and d.process.poll() is None, d.output()[-3000:]
        started = time.monotonic()
        assert d.signal(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
    finally:
        if d.process is not None and d.process.poll() is None:
            d.process.kill()
    output = d.output()
    assert "Traceback" not in output
    # A file name with a newline cannot forge a log line of its own.
    assert not any(line.startswith("forged log line") for line in output.splitlines())
    assert_good_once(ls_project, {"early", "late"})


# -- the model-based test ---------------------------------------------------------------
def test_random_file_operations_end_with_what_the_model_says(env, ls_project, tmp_path):
    """Vector's file-source experiment, for conversations: apply random operations to
    a watched directory and a model of it, run the daemon's pipeline, compare."""
    rng = random.Random(int(os.environ.get("LABELSYNC_SEED", "20261125")))
    root = Path(env["LABELSYNC_WATCH_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    env = {**env, "LABELSYNC_MIN_TURNS": "1"}
    model: dict[str, list[str]] = {}  # conversation -> its messages as they are on disk now
    files: dict[str, str] = {}  # document file name -> conversation
    log = root / "events.jsonl"
    logged: set[str] = set()
    log_seen = False  # labelsync has read the current log at least once
    counter = 0

    def document(thread: str) -> dict[str, Any]:
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text}
            for i, text in enumerate(model[thread])
        ]
        return {"thread_id": thread, "messages": messages}

    for step in range(60):
        op = rng.choice(["write", "grow", "append", "rename", "truncate", "delete", "sync", "swap"])
        if op == "write" or not files:
            counter += 1
            thread = f"doc-{counter}"
            model[thread] = [f"{thread} q0", f"{thread} a0"]
            files[f"{thread}.json"] = thread
            (root / f"{thread}.json").write_text(json.dumps(document(thread)))
        elif op == "grow":
            name = rng.choice(sorted(files))
            thread = files[name]
            model[thread] += [f"{thread} q{len(model[thread])}", f"{thread} a{len(model[thread])}"]
            tmp = root / f".{name}.tmp"
            tmp.write_text(json.dumps(document(thread)))
            os.replace(tmp, root / name)
        elif op == "append":
            thread = f"log-{rng.randrange(5)}"
            model.setdefault(thread, [])
            role = "user" if len(model[thread]) % 2 == 0 else "assistant"
            text = f"{thread} m{len(model[thread])}"
            model[thread].append(text)
            logged.add(thread)
            with log.open("a") as f:
                f.write(
                    json.dumps({"conversation_id": thread, "role": role, "content": text}) + "\n"
                )
        elif op == "rename":
            name = rng.choice(sorted(files))
            new = f"renamed-{step}-{name}"
            os.rename(root / name, root / new)
            files[new] = files.pop(name)
        elif op == "truncate" and log.exists():
            # The log is rotated (renamed to a name labelsync does not read) and a new one
            # starts: lines written after labelsync last looked must not be lost. A log it
            # never saw at all is out of reach, as for any log shipper: the daemon sees each
            # new log as it is created, so the model lets labelsync look once first.
            if not log_seen:
                assert run(["backfill"], env).returncode == 0
            os.rename(log, root / f"events.jsonl.{step}")
            log_seen = False
        elif op == "delete":
            name = rng.choice(sorted(files))
            (root / name).unlink()
            del files[name]  # its conversation stays in Label Studio as it was sent
        elif op == "sync":
            result = run(["backfill"], env)
            assert result.returncode == 0, result.stderr
            log_seen = log.exists()
        elif op == "swap":
            # The whole directory is replaced by a copy (a deploy that swaps folders).
            shutil.copytree(root, root.with_name("next"), symlinks=True)
            shutil.rmtree(root)
            os.rename(root.with_name("next"), root)
    result = run(["backfill"], env)
    assert result.returncode == 0, result.stderr

    tasks = project_tasks(ls_project)
    assert max(Counter((t["data"]["thread_id"], t["data"]["version"]) for t in tasks).values()) == 1
    assert max(Counter(t["data"]["sync_key"] for t in tasks).values()) == 1
    latest: dict[str, list[str]] = {}
    for t in sorted(tasks, key=lambda t: t["data"]["version"]):
        latest[t["data"]["thread_id"]] = [m["content"] for m in t["data"]["chat"]]
    on_disk = {files[name] for name in files} | logged
    problems = reported(env)
    for thread in on_disk:  # what is on disk now arrived, as it is now
        assert latest.get(thread) == model[thread], (thread, problems)
