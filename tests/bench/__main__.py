"""`make bench`: labelsync's speed and footprint against one real Label Studio.

Prints one table (paste it into the README). Not a test: nothing here asserts
a time. Sections can be picked: `python -m tests.bench backfill watch`.

  backfill  5,000 files: labelsync backfill vs. the raw bulk-import ceiling, the
            tutorial's list-then-import per file, and a rerun of the unchanged dir
  watch     labelsync run: latency from last write to task, a burst of 1,000
            conversations rewritten 20 times, and 100,000 synced files watched
            (start-up scan, idle CPU, peak RSS)
  export    100,000 annotated tasks (imported with their annotations): labelsync export
            --format messages (time, peak RSS), the project export endpoint for
            comparison, and labelsync report (time)

Sizes: BENCH_FILES (5000), BENCH_TUTORIAL_FILES (150), BENCH_LATENCY_FILES (200),
BENCH_BURST (1000), BENCH_WATCHED (100000), BENCH_EXPORT_TASKS (100000).
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
N_EXPORT = int(os.environ.get("BENCH_EXPORT_TASKS", "100000"))

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


def timed(env: dict[str, str], *args: str) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of one labelsync command.

    GNU time reports the peak: wait4's ru_maxrss for a child of this process would
    count this process's memory too, held by the forked child until it execs.
    """
    with tempfile.NamedTemporaryFile("r") as peak:
        started = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name,
             sys.executable, "-m", "labelsync.cli", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        kib = int(peak.read().split()[-1])
    if result.returncode != 0:
        raise SystemExit(f"labelsync {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    print(f"    {result.stderr.strip()[-600:]}", flush=True)
    return wall, kib / 1024


def read_file(path: Path) -> Any:
    return readers.read(json.loads(path.read_bytes()), file_name=path.name)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    sections = sys.argv[1:] or ["backfill", "watch"]
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
