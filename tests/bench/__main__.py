"""`make bench`: labelsync's speed and footprint against one real Label Studio.

Prints one table (paste it into the README). Not a test: nothing here asserts
a time. Sections can be picked: `python -m tests.bench backfill watch`.

  backfill  5,000 files: labelsync backfill vs. the raw bulk-import ceiling, the
            tutorial's list-then-import per file, a rerun of the unchanged dir, and
            the same backfill with LABELSYNC_REDACT=default
  watch     labelsync run: latency from last write to task, a burst of 1,000
            conversations rewritten 20 times, and 100,000 synced files watched
            (start-up scan, idle CPU, peak RSS)
  sources   one JSONL file of 100,000 conversations vs the same as 100,000 files;
            peak RSS reading a 1 GB JSON array export; `labelsync run` tailing a
            log appended at 1,000 lines a second (CPU, last line to task visible)
  export    100,000 annotated tasks (imported with their annotations): labelsync export
            --format messages (time, peak RSS), the project export endpoint for
            comparison, and labelsync report (time)
  shared    20,000 files: one backfill on SQLite, one on PostgreSQL, and 4 daemons
            (one directory each, as 4 hosts) sharing one PostgreSQL state, against
            the one-request import ceiling, with the CPU each side used; then state
            lookups and claims per second with 4 daemons at once

Sizes: BENCH_FILES (5000), BENCH_TUTORIAL_FILES (150), BENCH_LATENCY_FILES (200),
BENCH_BURST (1000), BENCH_WATCHED (100000), BENCH_JSONL (100000), BENCH_EXPORT_MB
(1024), BENCH_TAIL_SECONDS (60), BENCH_EXPORT_TASKS (100000), BENCH_SHARED_FILES
(20000), BENCH_SHARED_DAEMONS (4).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import labelsync
from labelsync import readers
from labelsync.labelstudio import LabelStudio
from labelsync.task import build_task
from tests.support.corpus import conversation, write_atomic, write_corpus
from tests.support.labelstudio import LabelStudioServer, create_project

N_FILES = int(os.environ.get("BENCH_FILES", "5000"))
N_TUTORIAL = int(os.environ.get("BENCH_TUTORIAL_FILES", "150"))
N_LATENCY = int(os.environ.get("BENCH_LATENCY_FILES", "200"))
N_BURST = int(os.environ.get("BENCH_BURST", "1000"))
N_WATCHED = int(os.environ.get("BENCH_WATCHED", "100000"))
N_JSONL = int(os.environ.get("BENCH_JSONL", "100000"))
EXPORT_MB = int(os.environ.get("BENCH_EXPORT_MB", "1024"))
TAIL_S = float(os.environ.get("BENCH_TAIL_SECONDS", "60"))
N_EXPORT = int(os.environ.get("BENCH_EXPORT_TASKS", "100000"))
N_SHARED = int(os.environ.get("BENCH_SHARED_FILES", "20000"))
N_DAEMONS = int(os.environ.get("BENCH_SHARED_DAEMONS", "4"))

ROWS: list[tuple[str, str, str]] = []  # (measure, figure, target)


def row(measure: str, figure: str, target: str = "") -> None:
    ROWS.append((measure, figure, target))
    print(f"  {measure}: {figure}" + (f"  (target: {target})" if target else ""), flush=True)


class Bench:
    def __init__(self, server: LabelStudioServer, work: Path) -> None:
        self.server, self.work = server, work

    def project(self, title: str) -> Any:
        return create_project(self.server, title)

    def env(self, project: Any, name: str, **extra: str) -> dict[str, str]:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))
        }
        return base | {
            "LABEL_STUDIO_URL": self.server.url,
            "LABEL_STUDIO_API_KEY": self.server.legacy_token,
            "LABEL_STUDIO_PROJECT_ID": str(project.id),
            "LABELSYNC_STATE_DIR": str(self.work / f"state-{name}"),
            **extra,
        }

    def labelsync(self, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
        """Wall time of the whole command, and what it recorded about itself."""
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "labelsync.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"labelsync {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        status = subprocess.run(
            [sys.executable, "-m", "labelsync.cli", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return wall, json.loads(status.stdout)["last_backfill"]

    def count_tasks(self, project: Any) -> int:
        response = httpx.get(
            f"{self.server.url}/api/projects/{project.id}",
            headers={"Authorization": f"Token {self.server.legacy_token}"},
            timeout=60,
        )
        return int(response.json()["task_number"])

    # -- backfill ------------------------------------------------------------------------
    def backfill(self) -> None:
        print(f"\n== backfill: {N_FILES} conversation files", flush=True)
        corpus = self.work / "corpus"
        paths = write_corpus(corpus, N_FILES, seed=11)

        tasks = [build_task(read_file(p), 1, p.name) for p in paths]

        def bulk_import(title: str) -> float:
            project = self.project(title)
            client = LabelStudio(self.server.url, self.server.legacy_token, project.id, 600)
            started = time.perf_counter()
            client.import_tasks(tasks)
            return time.perf_counter() - started

        # Label Studio slows a little as its database grows, so the ceiling is
        # measured before and after the backfill and the two are averaged.
        before = bulk_import("bench ceiling 1")
        project = self.project("bench backfill")
        env = self.env(project, "backfill")
        wall, inside = self.labelsync(env, "backfill", str(corpus))
        assert self.count_tasks(project) == N_FILES, "backfill did not create every task"
        after = bulk_import("bench ceiling 2")
        bulk_s = (before + after) / 2
        ceiling_rate = N_FILES / bulk_s
        row(
            f"ceiling: {N_FILES} prepared tasks in one bulk import request",
            f"{bulk_s:.2f} s ({before:.2f} before, {after:.2f} after), {ceiling_rate:,.0f} tasks/s",
        )
        rate = N_FILES / inside["seconds"]
        row(
            f"labelsync backfill of {N_FILES} files (engine time)",
            f"{inside['seconds']:.2f} s, {rate:,.0f} files/s = {rate / ceiling_rate:.2f}x ceiling",
            ">= 0.8x ceiling",
        )
        row(
            f"labelsync backfill of {N_FILES} files (whole command, incl. start-up)",
            f"{wall:.2f} s, {N_FILES / wall:,.0f} files/s = "
            f"{N_FILES / wall / ceiling_rate:.2f}x ceiling",
        )

        wall, inside = self.labelsync(env, "backfill", str(corpus))
        imports = inside.get("new_tasks", 0) + inside.get("new_versions", 0)
        row(
            f"second backfill, {N_FILES} unchanged files (engine time)",
            f"{inside['seconds']:.2f} s, {imports} imports",
            "< 2 s, 0 imports",
        )
        row(f"second backfill, {N_FILES} unchanged files (whole command)", f"{wall:.2f} s")

        # The same corpus with every built-in pattern detector on: what redaction costs.
        redacted = self.project("bench backfill redacted")
        env = self.env(redacted, "backfill-redacted", LABELSYNC_REDACT="default")
        _, inside_redacted = self.labelsync(env, "backfill", str(corpus))
        assert self.count_tasks(redacted) == N_FILES, "redacted backfill did not create every task"
        redacted_rate = N_FILES / inside_redacted["seconds"]
        row(
            f"labelsync backfill of {N_FILES} files, LABELSYNC_REDACT=default (engine time)",
            f"{inside_redacted['seconds']:.2f} s, {redacted_rate:,.0f} files/s "
            f"({redacted_rate / rate:.2f}x unredacted)",
        )

        self.tutorial(paths[:N_TUTORIAL])

    def tutorial(self, paths: list[Path]) -> None:
        """The tutorial's way: before each import, list every task to dedup by session id."""
        project = self.project("bench tutorial")
        client = project.client
        started = time.perf_counter()
        for path in paths:
            task = build_task(read_file(path), 1, path.name)
            session_id = task["data"]["session_id"]
            existing = client.tasks.list(project=project.id)
            if any((t.data or {}).get("session_id") == session_id for t in existing):
                continue
            client.projects.import_tasks(id=project.id, request=[task])
        seconds = time.perf_counter() - started
        row(
            f"tutorial: list-then-import per file, {len(paths)} files",
            f"{seconds:.1f} s, {len(paths) / seconds:.1f} files/s (slower as the project grows)",
        )

    # -- watch ---------------------------------------------------------------------------
    def daemon(
        self, env: dict[str, str], log: Path
    ) -> tuple[subprocess.Popen[bytes], socket.socket]:
        address = str(self.work / f"notify-{time.monotonic_ns()}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "labelsync.cli", "run"],
                env={**env, "NOTIFY_SOCKET": address},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process, sock

    @staticmethod
    def wait_ready(sock: socket.socket, timeout: float = 600) -> None:
        sock.settimeout(timeout)
        while b"READY=1" not in sock.recv(4096):
            pass

    def poll_tasks(
        self,
        project: Any,
        until: Callable[[list[dict[str, Any]]], bool],
        on_poll: Callable[[list[dict[str, Any]], float], None] | None = None,
        timeout: float = 600,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with httpx.Client(
            headers={"Authorization": f"Token {self.server.legacy_token}"}, timeout=60
        ) as http:
            while True:
                seen = time.time()
                body = http.get(
                    f"{self.server.url}/api/tasks",
                    params={
                        "project": project.id,
                        "fields": "task_only",
                        "include": "id,data",
                        "page_size": 100_000,
                    },
                ).json()
                tasks = body["tasks"] if isinstance(body, dict) else body
                if on_poll:
                    on_poll(tasks, seen)
                if until(tasks) or time.monotonic() > deadline:
                    return tasks
                time.sleep(0.1)

    def watch(self) -> None:
        print("\n== watch mode (labelsync run)", flush=True)
        self.latency()
        self.burst()
        self.watched()

    def latency(self) -> None:
        quiet = 1.0
        project = self.project("bench latency")
        root = self.work / "latency"
        root.mkdir()
        env = self.env(
            project, "latency", LABELSYNC_WATCH_DIR=str(root), LABELSYNC_QUIET_SECONDS=str(quiet)
        )
        process, sock = self.daemon(env, self.work / "latency.log")
        self.wait_ready(sock)
        written: dict[str, float] = {}
        visible: dict[str, float] = {}

        def writer() -> None:
            rng = random.Random(5)
            for i in range(N_LATENCY):
                thread = f"lat-{i}"
                path = root / f"{thread}.json"
                write_atomic(path, conversation(thread, 2, rng))
                written[thread] = path.stat().st_mtime
                time.sleep(rng.uniform(0.01, 0.1))

        def record(tasks: list[dict[str, Any]], seen: float) -> None:
            for t in tasks:
                visible.setdefault(t["data"]["thread_id"], seen)

        thread = threading.Thread(target=writer)
        thread.start()
        self.poll_tasks(project, lambda tasks: len(tasks) >= N_LATENCY, record)
        thread.join()
        latencies = sorted(visible[t] - written[t] for t in written if t in visible)
        p50 = statistics.median(latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        row(
            f"latency, last write to task visible ({N_LATENCY} files, quiet {quiet:g} s)",
            f"p50 {p50:.2f} s, p95 {p95:.2f} s",
            f"<= {quiet + 1:g} s",
        )
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        sock.close()

    def burst(self) -> None:
        project = self.project("bench burst")
        root = self.work / "burst"
        root.mkdir()
        env = self.env(project, "burst", LABELSYNC_WATCH_DIR=str(root), LABELSYNC_QUIET_SECONDS="3")
        process, sock = self.daemon(env, self.work / "burst.log")
        self.wait_ready(sock)
        rng = random.Random(9)
        started = time.perf_counter()
        for rewrite in range(20):
            for i in range(N_BURST):
                write_atomic(root / f"burst-{i}.json", conversation(f"burst-{i}", 2 + rewrite, rng))
        written_s = time.perf_counter() - started
        tasks = self.poll_tasks(project, lambda tasks: len(tasks) >= N_BURST, timeout=300)
        time.sleep(5)  # anything extra would show up now
        count = self.count_tasks(project)
        final = sum(1 for t in tasks if t["data"]["turn_count"] == 21)
        row(
            f"burst: {N_BURST} conversations rewritten 20 times ({20 * N_BURST} writes in "
            f"{written_s:.0f} s)",
            f"{count} tasks, {final} with the final content",
            f"exactly {N_BURST} tasks",
        )
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        sock.close()

    def watched(self) -> None:
        project = self.project("bench watched")
        root = self.work / "watched"
        write_corpus(root, N_WATCHED, seed=3, prefix="w")
        env = self.env(
            project, "watched", LABELSYNC_WATCH_DIR=str(root), LABELSYNC_BATCH_SIZE="1000"
        )
        _, inside = self.labelsync(env, "backfill")
        row(
            f"backfill of {N_WATCHED:,} files (to have them synced)",
            f"{inside['seconds']:.1f} s, {N_WATCHED / inside['seconds']:,.0f} files/s",
        )

        started = time.perf_counter()
        process, sock = self.daemon(env, self.work / "watched.log")
        self.wait_ready(sock)
        ready_s = time.perf_counter() - started
        row(
            f"labelsync run start-up with {N_WATCHED:,} synced files (to READY=1, no imports)",
            f"{ready_s:.2f} s",
            "< 10 s",
        )
        time.sleep(5)  # let start-up settle before measuring idle
        before = cpu_seconds(process.pid)
        idle_s = 30.0
        time.sleep(idle_s)
        used = cpu_seconds(process.pid) - before
        row(f"idle CPU watching {N_WATCHED:,} files", f"{100 * used / idle_s:.2f} % of one core")
        row(f"peak RSS watching {N_WATCHED:,} files", f"{peak_rss_mib(process.pid):.0f} MiB")
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        sock.close()
        assert self.count_tasks(project) == N_WATCHED

    # -- sources -------------------------------------------------------------------------
    def sources(self) -> None:
        print("\n== many conversations per file, and logs", flush=True)
        self.jsonl()
        self.big_files()
        self.export_memory()
        self.tailing()

    def jsonl(self) -> None:
        rng = random.Random(21)
        conversations = [conversation(f"j-{i}", rng.randint(2, 6), rng) for i in range(N_JSONL)]
        as_lines = self.work / "jsonl"
        as_lines.mkdir()
        with open(as_lines / "dataset.jsonl", "w") as out:
            for item in conversations:
                out.write(json.dumps(item) + "\n")
        as_files = self.work / "files"
        as_files.mkdir()
        for item in conversations:
            (as_files / f"conversation_{item['session_id']}.json").write_text(json.dumps(item))
        ceiling = [build_task(readers.read(c), 1, "x") for c in conversations[:5000]]
        project = self.project("bench jsonl ceiling")
        client = LabelStudio(self.server.url, self.server.legacy_token, project.id, 600)
        started = time.perf_counter()
        client.import_tasks(ceiling)
        ceiling_rate = len(ceiling) / (time.perf_counter() - started)
        row(
            "ceiling: 5000 prepared tasks in one bulk import request",
            f"{ceiling_rate:,.0f} tasks/s",
        )
        for label, directory in (("one JSONL file", as_lines), ("files", as_files)):
            project = self.project(f"bench {label}")
            env = self.env(project, f"jsonl-{label}", LABELSYNC_BATCH_SIZE="1000")
            wall, inside = self.labelsync(env, "backfill", str(directory))
            assert self.count_tasks(project) == N_JSONL, f"{label}: not every task was created"
            rate = N_JSONL / inside["seconds"]
            row(
                f"backfill of {N_JSONL:,} conversations as {label} (engine time; whole command)",
                f"{inside['seconds']:.1f} s, {rate:,.0f} conversations/s = "
                f"{rate / ceiling_rate:.2f}x ceiling; {wall:.1f} s",
            )
        shutil.rmtree(as_files)

    def big_files(self) -> None:
        """Memory bounded by bytes, not only by count: 120 conversations of 5 MB each."""
        directory = self.work / "big"
        directory.mkdir()
        text = ("The quick brown fox jumps over the lazy dog. " * 20 + "\n") * 200
        messages = []
        for t in range(14):
            messages += [
                {"role": "user", "content": f"q{t} {text}"},
                {"role": "assistant", "content": f"a{t} {text}"},
            ]
        for i in range(120):
            document = {"thread_id": f"big-{i}", "messages": messages}
            (directory / f"c{i}.json").write_text(json.dumps(document))
        size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 1024 / 1024
        project = self.project("bench big files")
        env = self.env(project, "big", LABELSYNC_WATCH_DIR=str(directory))
        seconds, peak = timed(env, "backfill")
        row(
            f"peak RSS of a backfill of 120 files of 5 MB ({size_mb:,.0f} MB)",
            f"{peak:.0f} MiB, {seconds:.0f} s",
        )
        shutil.rmtree(directory)

    def export_memory(self) -> None:
        """A ChatGPT-sized export read in flat memory: a dry-run backfill of a 1 GB JSON array."""
        directory = self.work / "export"
        directory.mkdir()
        path = directory / "conversations.json"
        rng = random.Random(4)
        target = EXPORT_MB * 1024 * 1024
        count = 0
        with open(path, "w") as out:
            out.write("[")
            while out.tell() < target:
                item = conversation(f"x-{count}", rng.randint(2, 8), rng, "openai")
                out.write(("," if count else "") + json.dumps(item))
                count += 1
            out.write("]")
        size_mb = path.stat().st_size / 1024 / 1024
        project = self.project("bench export memory")
        env = self.env(project, "export-memory", LABELSYNC_WATCH_DIR=str(directory))
        seconds, peak = timed(env, "backfill", "--dry-run")
        row(
            f"peak RSS reading a {size_mb:,.0f} MB JSON array export ({count:,} conversations, "
            "backfill --dry-run)",
            f"{peak:.0f} MiB, {seconds:.0f} s",
            "flat, < 300 MB",
        )
        path.unlink()

    def tailing(self) -> None:
        """A bot appending 1,000 message lines a second to one log while labelsync runs."""
        quiet = 1.0
        project = self.project("bench tail")
        root = self.work / "tail"
        root.mkdir()
        env = self.env(
            project,
            "tail",
            LABELSYNC_WATCH_DIR=str(root),
            LABELSYNC_QUIET_SECONDS=str(quiet),
            LABELSYNC_MIN_TURNS="1",
        )
        log = root / "bot.jsonl"
        log.touch()
        process, sock = self.daemon(env, self.work / "tail.log")
        self.wait_ready(sock)
        last_line: dict[str, float] = {}
        visible: dict[str, float] = {}
        per_conversation = 6  # lines: 3 questions, 3 answers, then it goes quiet
        rate = 1000
        stop = threading.Event()

        def writer() -> None:
            started = time.perf_counter()
            sent, n = 0, 0
            open_threads: dict[str, int] = {}
            with open(log, "a", buffering=1) as out:
                while not stop.is_set() and time.perf_counter() - started < TAIL_S:
                    due = int((time.perf_counter() - started) * rate)
                    while sent < due:
                        if len(open_threads) < 200:
                            open_threads[f"t-{n}"] = 0
                            n += 1
                        thread = next(iter(open_threads))
                        k = open_threads.pop(thread)
                        role = "user" if k % 2 == 0 else "assistant"
                        out.write(
                            json.dumps(
                                {"conversation_id": thread, "role": role, "content": f"m{k}"}
                            )
                            + "\n"
                        )
                        sent += 1
                        if k + 1 < per_conversation:
                            open_threads[thread] = k + 1
                        else:
                            last_line[thread] = time.time()
                    time.sleep(0.005)

        def record(tasks: list[dict[str, Any]], seen: float) -> None:
            for t in tasks:
                if len(t["data"]["chat"]) == per_conversation:
                    visible.setdefault(t["data"]["thread_id"], seen)

        cpu_before = cpu_seconds(process.pid)
        writing = threading.Thread(target=writer)
        started = time.perf_counter()
        writing.start()
        cpu_used, elapsed = 0.0, 0.0

        def finished(tasks: list[dict[str, Any]]) -> bool:
            """Polled while the bot writes (a task is seen when it appears, not after),
            until every conversation it finished is a task."""
            nonlocal cpu_used, elapsed
            if writing.is_alive():
                return False
            if not elapsed:
                cpu_used = cpu_seconds(process.pid) - cpu_before
                elapsed = time.perf_counter() - started
            return set(last_line.copy()) <= set(visible)

        self.poll_tasks(project, finished, record, timeout=TAIL_S + 120)
        writing.join()
        done = set(last_line)
        latencies = sorted(visible[t] - last_line[t] for t in done if t in visible)
        p50 = statistics.median(latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        row(
            f"labelsync run tailing a log appended at {rate:,} lines/s for {elapsed:.0f} s "
            f"({len(done):,} conversations)",
            f"CPU {100 * cpu_used / elapsed:.0f} % of one core; last line to task visible "
            f"p50 {p50:.2f} s, p95 {p95:.2f} s (quiet {quiet:g} s)",
        )
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        sock.close()

    # -- export --------------------------------------------------------------------------
    def export(self) -> None:
        print(f"\n== export: {N_EXPORT:,} annotated tasks", flush=True)
        config = (Path(labelsync.__file__).parent / "templates" / "community.xml").read_text()
        admin = LabelStudio(self.server.url, self.server.legacy_token, 0, 600)
        project_id = admin.create_project("bench export", config)
        ls = LabelStudio(self.server.url, self.server.legacy_token, project_id, 600)
        second = self.second_annotator()
        rng = random.Random(8)
        started = time.perf_counter()
        for first in range(0, N_EXPORT, 1000):
            batch = [
                annotated_task(i, rng, second) for i in range(first, min(first + 1000, N_EXPORT))
            ]
            ls.import_tasks(batch)
        row(
            f"import of {N_EXPORT:,} tasks with their annotations (set-up)",
            f"{time.perf_counter() - started:.0f} s",
        )
        env = self.env(type("P", (), {"id": project_id}), "export")
        out = self.work / "messages.jsonl"
        wall, peak = timed(env, "export", "--format", "messages", "--out", str(out))
        with open(out) as rows:
            count = sum(1 for _ in rows)
        row(
            f"labelsync export --format messages, {N_EXPORT:,} annotated tasks",
            f"{wall:.1f} s, {N_EXPORT / wall:,.0f} tasks/s, {count:,} rows, "
            f"peak RSS {peak:.0f} MiB",
        )
        wall, peak = timed(env, "export", "--format", "sft", "--out", str(self.work / "sft.jsonl"))
        row(
            "labelsync export --format sft (latest version kept on disk)",
            f"{wall:.1f} s, peak RSS {peak:.0f} MiB",
        )
        wall, peak = timed(env, "report", "--out", str(self.work / "report.html"))
        row(
            f"labelsync report, {N_EXPORT:,} annotated tasks",
            f"{wall:.1f} s, peak RSS {peak:.0f} MiB",
        )
        started = time.perf_counter()
        with httpx.stream(
            "GET",
            f"{self.server.url}/api/projects/{project_id}/export",
            params={"exportType": "JSON"},
            headers={"Authorization": f"Token {self.server.legacy_token}"},
            timeout=3600,
        ) as response:
            size = sum(len(chunk) for chunk in response.iter_bytes())
        row(
            "for comparison: the project export endpoint, whole (download only, no parsing)",
            f"{time.perf_counter() - started:.1f} s, {size / 2**20:,.0f} MiB in one answer",
        )

    def second_annotator(self) -> int:
        headers = {"Authorization": f"Token {self.server.legacy_token}"}
        response = httpx.post(
            f"{self.server.url}/api/users/",
            json={"email": "second@example.com", "username": "second@example.com"},
            headers=headers,
            timeout=60,
        )
        response.raise_for_status()
        return int(response.json()["id"])

    # -- shared: several daemons on one PostgreSQL state ------------------------------
    def shared(self) -> None:
        from tests.support.postgres import PostgresServer

        print(f"\n== shared state: {N_SHARED} files, {N_DAEMONS} daemons", flush=True)
        root = self.work / "shared"
        per = N_SHARED // N_DAEMONS
        dirs = [root / f"host-{n}" for n in range(N_DAEMONS)]
        paths = [p for n, d in enumerate(dirs) for p in write_corpus(d, per, 100 + n, "s")]
        tasks = [build_task(read_file(p), 1, p.name) for p in paths]
        ls_cpu = lambda: group_cpu_seconds(self.server._process.pid)  # noqa: E731
        with PostgresServer(durable=True) as pg:
            pg_cpu = lambda: postgres_cpu_seconds(pg)  # noqa: E731
            print(f"  PostgreSQL {pg.bin.parent.name} (fsync on)", flush=True)

            def ceiling(title: str) -> float:
                project = self.project(title)
                client = LabelStudio(self.server.url, self.server.legacy_token, project.id, 1800)
                started = time.perf_counter()
                client.import_tasks(tasks)
                return time.perf_counter() - started

            def measured(label: str, run: Callable[[], None], project: Any) -> float:
                cpu = (ls_cpu(), pg_cpu(), children_cpu_seconds())
                started = time.perf_counter()
                run()
                wall = time.perf_counter() - started
                ls_s, pg_s, ours_s = (
                    ls_cpu() - cpu[0], pg_cpu() - cpu[1], children_cpu_seconds() - cpu[2]
                )  # fmt: skip
                assert self.count_tasks(project) == N_SHARED, f"{label}: not every task"
                row(
                    f"{label}, {N_SHARED:,} files",
                    f"{wall:.1f} s, {N_SHARED / wall:,.0f} files/s; CPU: Label Studio "
                    f"{ls_s:.1f} s, labelsync {ours_s:.1f} s, PostgreSQL {pg_s:.1f} s",
                )
                return wall

            before = ceiling("bench shared ceiling 1")
            walls: dict[str, float] = {}

            project = self.project("bench shared: 4 daemons")
            url = pg.url(pg.create_database(), password=True)

            def daemons() -> None:
                runs = [
                    subprocess.Popen(
                        [sys.executable, "-m", "labelsync.cli", "backfill"],
                        env=self.env(
                            project,
                            f"d{n}",
                            LABELSYNC_STATE_URL=url,
                            LABELSYNC_DAEMON_NAME=f"host-{n}",
                            LABELSYNC_WATCH_DIR=str(d),
                        ),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for n, d in enumerate(dirs)
                ]
                for r in runs:
                    _, err = r.communicate()
                    if r.returncode != 0:
                        raise SystemExit(f"a daemon's backfill failed:\n{err[-3000:]}")

            walls["shared"] = measured(
                f"{N_DAEMONS} backfills at once ({per:,} files each, own directory) sharing "
                "PostgreSQL",
                daemons,
                project,
            )
            for label, extra in (
                ("SQLite", {}),
                (
                    "PostgreSQL",
                    {"LABELSYNC_STATE_URL": pg.url(pg.create_database(), password=True)},
                ),
            ):
                one = self.project(f"bench shared: one daemon, {label}")
                env = self.env(
                    one, f"one-{label}", LABELSYNC_WATCH_DIR=str(root), LABELSYNC_RECURSIVE="true",
                    **extra,
                )  # fmt: skip
                walls[label] = measured(
                    f"one backfill on {label}", lambda env=env: self.labelsync(env, "backfill"), one
                )
            after = ceiling("bench shared ceiling 2")
            bulk_s = (before + after) / 2
            rate = N_SHARED / bulk_s
            row(
                f"ceiling: {N_SHARED:,} prepared tasks in one import request",
                f"{bulk_s:.1f} s ({before:.1f} before, {after:.1f} after), {rate:,.0f} tasks/s",
            )
            for key, label in (
                ("shared", f"{N_DAEMONS} daemons, PostgreSQL"),
                ("SQLite", "one daemon, SQLite"),
                ("PostgreSQL", "one daemon, PostgreSQL"),
            ):
                row(f"{label}: share of the ceiling", f"{N_SHARED / walls[key] / rate:.2f}x")

            self.lookups(url, project.id, paths)

    def lookups(self, url: str, project_id: int, paths: list[Path]) -> None:
        """versions_of and claims per second, one process then N_DAEMONS at once."""
        threads = [p.stem.removeprefix("conversation_") for p in paths]
        ids = self.work / "thread-ids.json"
        ids.write_text(json.dumps(threads))
        for workers in (1, N_DAEMONS):
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from tests.bench.__main__ import lookup_worker; import sys; "
                        "lookup_worker(*sys.argv[1:])",
                        url,
                        str(project_id),
                        str(ids),
                        str(n),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for n in range(workers)
            ]
            results = [json.loads(p.communicate()[0]) for p in procs]
            total = {k: sum(r[k] for r in results) for k in results[0]}
            row(
                f"state lookups, {workers} process{'es' if workers > 1 else ''} at once "
                f"({len(threads):,} conversations held)",
                f"versions_of: {total['single']:,.0f} lookups/s one id a call, "
                f"{total['batched']:,.0f} ids/s in calls of 1,000; claims: "
                f"{total['claims']:,.0f} conversations/s claimed and released in batches of 100",
            )


def annotated_task(i: int, rng: random.Random, second: int) -> dict[str, Any]:
    """A corpus conversation as labelsync sends it, with one annotation (two on every
    tenth task, the second by another annotator) in the shipped template's format."""
    chat = conversation(f"e-{i:06d}", rng.randint(2, 6), rng)
    chat["timestamp"] = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z"
    chat["model"] = ("llama3.2:1b", "llama3.2:latest", "gpt-4o-mini")[i % 3]
    task = build_task(readers.read(chat), 1, f"conversation_e-{i:06d}.json")

    def result() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {"from_name": "rating", "to_name": "chat", "type": "rating",
             "value": {"rating": rng.randint(1, 5)}},
            {"from_name": "answered", "to_name": "chat", "type": "choices",
             "value": {"choices": [rng.choice(["Yes", "Partly", "No"])]}},
        ]  # fmt: skip
        for m in task["data"]["chat"]:
            n = m["index"]
            if m["role"] == "assistant":
                items += [
                    {"from_name": f"clarity_{n}", "to_name": f"msg_{n}", "type": "rating",
                     "value": {"rating": rng.randint(1, 5)}},
                    {"from_name": f"accuracy_{n}", "to_name": f"msg_{n}", "type": "rating",
                     "value": {"rating": rng.randint(1, 5)}},
                    {"from_name": f"tone_{n}", "to_name": f"msg_{n}", "type": "choices",
                     "value": {"choices": [rng.choice(["Appropriate", "Too formal"])]}},
                ]  # fmt: skip
        return items

    task["annotations"] = [{"result": result()}]
    if i % 10 == 0:
        task["annotations"].append({"result": result(), "completed_by": second})
    return task


# Runs one command and prints its peak RSS in KiB: resource's RUSAGE_CHILDREN of this
# small process, so the figure is labelsync's own (GNU time's way, without GNU time).
_PEAK = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(rc)"
)


def timed(env: dict[str, str], *args: str) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of one labelsync command.

    Measured from a small wrapper process: wait4's ru_maxrss for a child of this
    process would count this process's memory too, held by the forked child until
    it execs.
    """
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "labelsync.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"labelsync {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    output, _, kib = result.stderr.strip().rpartition("\n")
    if output:
        print(f"    {output[-600:]}", flush=True)
    return wall, int(kib) / 1024


def read_file(path: Path) -> Any:
    return readers.read(json.loads(path.read_bytes()), file_name=path.name)


def lookup_worker(url: str, project_id: str, ids_path: str, seed: str) -> None:
    """One process's lookups for 3 s each way (run by `lookups`); prints its rates."""
    from labelsync.state import Identity, State

    threads = json.loads(Path(ids_path).read_text())
    rng = random.Random(int(seed))
    state = State.open(url, Identity.here(f"bench-{seed}"))
    project = int(project_id)
    result: dict[str, float] = {}
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < 3.0:
        assert state.versions_of(project, [rng.choice(threads)])
        calls += 1
    result["single"] = calls / (time.perf_counter() - started)
    started, found = time.perf_counter(), 0
    while time.perf_counter() - started < 3.0:
        found += len(state.versions_of(project, rng.sample(threads, min(1000, len(threads)))))
    result["batched"] = found / (time.perf_counter() - started)
    started, claimed, batch = time.perf_counter(), 0, 0
    while time.perf_counter() - started < 3.0:
        mine = [f"bench-{seed}-{batch}-{i}" for i in range(100)]
        claimed += len(state.claim(project, mine, 60))
        with state.transaction() as tx:
            tx.release(project, mine, state.identity.owner)
        batch += 1
    result["claims"] = claimed / (time.perf_counter() - started)
    state.close()
    print(json.dumps(result), flush=True)


def _proc_cpu(stat: str, children: bool = False) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(session: int) -> float:
    """CPU used by the live processes of one session (Label Studio and its workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == session:
                total += _proc_cpu(stat)
    return total


def postgres_cpu_seconds(pg: Any) -> float:
    """CPU of the postmaster, its ended backends (reaped: counted in it) and live ones."""
    leader = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    total = _proc_cpu(Path(f"/proc/{leader}/stat").read_text(), children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == leader:
                total += _proc_cpu(stat)
    return total


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    sections = sys.argv[1:] or ["backfill", "watch", "sources", "export", "shared"]
    work = Path(tempfile.mkdtemp(prefix="labelsync-bench-"))
    print(f"labelsync benchmark on {os.cpu_count()} cores; work dir {work}", flush=True)
    try:
        with LabelStudioServer(work / "label-studio") as server:
            bench = Bench(server, work)
            for section in sections:
                getattr(bench, section)()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| measure | figure | target |\n|---|---|---|")
    for measure, figure, target in ROWS:
        print(f"| {measure} | {figure} | {target} |")


if __name__ == "__main__":
    main()
