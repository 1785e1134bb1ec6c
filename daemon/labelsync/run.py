"""`labelsync run`: the same engine as backfill, fed by file hints instead of one scan.

    startup()    watch, scan the directory (what changed while labelsync was down
                 is due at once), READY=1;
    main_loop()  hints -> debouncer -> settled files -> engine.sync -> metrics,
                 STATUS=, WATCHDOG=1 from this very loop, so a hung loop is restarted;
    shutdown()   STOPPING=1, stop watching. State is committed batch by batch.

Label Studio being down never stops the loop: files stay queued, the loop keeps
watching, and the sync is retried with backoff. A refused key is logged loudly
and retried slowly instead of crashing the service into a restart loop.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labelsync.contract import InvalidConversation, parse
from labelsync.debounce import Debouncer
from labelsync.delivery import Stopped
from labelsync.engine import Engine, SyncReport
from labelsync.files import TooLarge, Unsettled, read_stable, scan
from labelsync.labelstudio import AccessDenied, BadTasks, Fatal, LabelStudioError, Unavailable
from labelsync.metrics import Metrics
from labelsync.sdnotify import Notifier, WatchdogPacer
from labelsync.watcher import Watcher, WatcherError

log = logging.getLogger(__name__)

_WAKE_S = 0.5  # longest the loop sleeps without looking at the stop event
_STATUS_EVERY_S = 5.0
_FATAL_RETRY_S = 60.0


@dataclass(frozen=True)
class RunConfig:
    quiet_s: float = 300.0
    max_wait_s: float = 3600.0
    settle_s: float = 2.0
    flush_s: float = 0.25
    rescan_s: float = 300.0
    pattern: str = "*.json"
    recursive: bool = False
    polling: bool = False
    polling_interval_s: float = 2.0


class Daemon:
    def __init__(
        self,
        engine: Engine,
        config: RunConfig,
        stop: threading.Event,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
        ping: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.stop = stop
        self.notifier = notifier or Notifier.from_environ({})
        self.ping = ping or WatchdogPacer(self.notifier, clock)
        self.metrics = metrics
        self.clock, self.wall = clock, wall
        self.root = engine.config.root
        self.hints: queue.Queue[Path] = queue.Queue()
        self.settling: Debouncer[Path] = Debouncer(
            config.quiet_s, config.max_wait_s, config.settle_s
        )
        # A second, short clock: a file quiet for settle_s is peeked at once, and
        # sent right away if its content says the conversation has ended.
        self.peeking: Debouncer[Path] = Debouncer(max(config.settle_s, 0.01), config.max_wait_s, 0)
        self.ready: dict[Path, float] = {}  # settled, waiting for the batch to flush
        self.watcher: Watcher | None = None
        self.prepared = False
        self.failures = 0
        self.retry_at = 0.0
        self.next_rescan = 0.0
        self.next_status = 0.0
        self.totals: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_sync_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def serve(self) -> None:
        self.startup()
        try:
            self.main_loop()
        finally:
            self.shutdown()

    def startup(self) -> None:
        self._start_watcher()
        self._prepare()
        self._rescan()
        self.notifier.ready(self._status_line())
        log.info(
            "watching %s (quiet %gs, max wait %gs, %s)",
            self.root,
            self.config.quiet_s,
            self.config.max_wait_s,
            "polling" if self.config.polling else "inotify",
        )

    def main_loop(self) -> None:
        while not self.stop.is_set():
            self._drain_hints(self._sleep_s())
            now = self.clock()
            if not self.prepared and now >= self.retry_at:
                self._prepare()
            if now >= self.next_rescan:
                self._rescan()
            self._collect_due(now)
            if self._should_flush(now):
                self._sync(now)
            self._heartbeat(now)

    def shutdown(self) -> None:
        self.notifier.stopping("stopping")
        if self.watcher is not None:
            self.watcher.stop()
        self._publish(status="stopped")
        log.info("stopped; %d files were still settling (sent on the next start)", self.backlog)

    # -- stages --------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        return len(self.settling) + len(self.ready)

    def _start_watcher(self) -> None:
        try:
            self.watcher = Watcher(
                self.root,
                self.hints.put,
                pattern=self.config.pattern,
                recursive=self.config.recursive,
                polling=self.config.polling,
                polling_interval_s=self.config.polling_interval_s,
            )
            self.watcher.start()
        except WatcherError as exc:
            # Scans still find every file, just later: degrade, don't die.
            self.watcher = None
            self._error(f"{exc}; relying on rescans every {self.config.rescan_s:g} s")

    def _prepare(self) -> None:
        try:
            self.engine.prepare()
        except LabelStudioError as exc:
            self._failed(exc)
            return
        self.prepared = True

    def _drain_hints(self, timeout_s: float) -> None:
        try:
            path = self.hints.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return
        now = self.clock()
        while True:
            self._hint(path, now)
            try:
                path = self.hints.get_nowait()
            except queue.Empty:
                return

    def _hint(self, path: Path, now: float) -> None:
        if path.exists():
            self.settling.touch(path, now)
            self.peeking.touch(path, now)
            return
        # Deleted (or renamed away) before it settled: dropped. A task already in
        # Label Studio stays; only labelsync's note of the file goes.
        self.settling.forget(path)
        self.peeking.forget(path)
        self.ready.pop(path, None)
        self.engine.state.forget_file(str(path))

    def _rescan(self) -> None:
        """Events are hints: a full scan finds what the watcher missed or never saw."""
        now, wall = self.clock(), self.wall()
        known = self.engine.state.files()
        for path, stat in scan(self.root, self.config.pattern, self.config.recursive):
            record = known.pop(str(path), None)
            if record is not None and record.stat == stat:
                continue
            if path in self.ready or path in self.settling:
                continue
            age = max(0.0, wall - stat.mtime_ns / 1e9)
            if age >= self.config.quiet_s:
                self.ready.setdefault(path, now)  # changed while labelsync was away
            else:
                self.settling.touch(path, now - age)
                self.peeking.touch(path, now - age)
        for gone in known:  # files deleted while nobody watched
            if Path(gone).is_relative_to(self.root):
                self.engine.state.forget_file(gone)
        self.next_rescan = now + self.config.rescan_s
        if self.watcher is not None and not self.watcher.alive:
            self._error("the watcher stopped (was the directory replaced?); restarting it")
            self.watcher.stop()
            self._start_watcher()

    def _collect_due(self, now: float) -> None:
        for path in self.peeking.due(now):
            if self._has_ended(path):
                self.settling.forget(path)
                self.ready.setdefault(path, now)
        for path in self.settling.due(now):
            self.peeking.forget(path)
            self.ready.setdefault(path, now)

    def _has_ended(self, path: Path) -> bool:
        try:
            read = read_stable(path, self.engine.config.max_file_bytes)
            return parse(read.raw, path.name, self.engine.config.fields).ended
        except (Unsettled, TooLarge, InvalidConversation, OSError):
            return False  # the full quiet period decides

    def _should_flush(self, now: float) -> bool:
        if not self.ready or not self.prepared or now < self.retry_at:
            return False
        oldest = min(self.ready.values())
        return (
            len(self.ready) >= self.engine.config.batch_size or now - oldest >= self.config.flush_s
        )

    def _sync(self, now: float) -> None:
        paths = list(self.ready)
        try:
            report = self.engine.sync([(p, None) for p in paths])
        except Stopped:
            return
        except LabelStudioError as exc:
            self._failed(exc)
            return
        for path in paths:
            self.ready.pop(path, None)
        for path in report.unsettled:  # written to while read: settle again
            self.settling.touch(path, now)
        self.failures, self.last_sync_at = 0, self.wall()
        if self.last_error:
            log.info("Label Studio reachable again; backlog %d", self.backlog)
            self.last_error = None
        self.totals.update(report.tally)
        self._count(report, self.wall())

    def _count(self, report: SyncReport, wall: float) -> None:
        if self.metrics is None:
            return
        tally = report.tally
        m = self.metrics
        m.files_seen.inc(tally["files"] - tally["unchanged"])
        m.tasks_created.inc(tally["new_tasks"] + tally["new_versions"])
        m.versions.inc(tally["new_versions"])
        m.duplicates_skipped.inc(tally["duplicates"])
        m.quarantined.inc(tally["quarantined"])
        for _, stat in report.sent:
            m.import_latency.observe(max(0.0, wall - stat.mtime_ns / 1e9))

    def _failed(self, exc: LabelStudioError) -> None:
        self.failures += 1
        if isinstance(exc, Fatal):
            delay = _FATAL_RETRY_S
            log.error("%s; %d files waiting; retrying in %.0f s", exc, self.backlog, delay)
        else:
            ceiling = min(60.0, 2.0**self.failures)
            delay = random.uniform(ceiling / 2, ceiling)
            retry_after = getattr(exc, "retry_after_s", None)
            if isinstance(exc, Unavailable) and retry_after:
                delay = max(delay, retry_after)
            log.warning("%s; %d files waiting; retrying in %.1f s", exc, self.backlog, delay)
        self.last_error = str(exc)
        self.retry_at = self.clock() + delay
        if self.metrics is not None:
            self.metrics.label_studio_error(_kind(exc))

    def _error(self, message: str) -> None:
        self.last_error = message
        log.error("%s", message)

    # -- telling people ----------------------------------------------------------------
    def _sleep_s(self) -> float:
        now = self.clock()
        wake = [now + _WAKE_S, self.next_rescan, self.next_status]
        for debouncer in (self.settling, self.peeking):
            deadline = debouncer.next_deadline()
            if deadline is not None:
                wake.append(deadline)
        if self.ready:
            wake.append(max(self.retry_at, min(self.ready.values()) + self.config.flush_s))
        return min(wake) - now

    def _heartbeat(self, now: float) -> None:
        # Pinged from the loop that does the work: if a sync hangs, pings stop.
        self.ping()
        if self.metrics is not None:
            self.metrics.backlog.set(self.backlog)
        if now >= self.next_status:
            self.notifier.status(self._status_line())
            self._publish(status="running")
            self.next_status = now + _STATUS_EVERY_S

    def _status_line(self) -> str:
        t = self.totals
        line = (
            f"{self.backlog} waiting, {t['new_tasks']} new tasks, "
            f"{t['new_versions']} new versions, {t['quarantined']} quarantined"
        )
        return f"{line}; last error: {self.last_error}" if self.last_error else line

    def _publish(self, status: str) -> None:
        """What `labelsync status` shows about the running daemon."""
        self.engine.state.set_meta(
            "daemon",
            json.dumps(
                {
                    "status": status,
                    "at": self.wall(),
                    "backlog": self.backlog,
                    "last_sync": self.last_sync_at,
                    "last_error": self.last_error,
                    "totals": dict(self.totals),
                    "watch_dir": str(self.root),
                }
            ),
        )


def _kind(exc: LabelStudioError) -> str:
    if isinstance(exc, AccessDenied):
        return "auth"
    if isinstance(exc, BadTasks):
        return "rejected"
    if isinstance(exc, Unavailable):
        return exc.kind
    return "other"
