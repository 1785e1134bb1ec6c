"""`labelsync run`: the same engine as backfill, fed by file hints instead of one scan.

    startup()    watch, scan the directory (what changed while labelsync was down
                 is due at once), READY=1;
    main_loop()  hints -> debouncers -> engine -> metrics, STATUS=, WATCHDOG=1
                 from this very loop, so a hung loop is restarted;
    shutdown()   STOPPING=1, stop watching. State is committed batch by batch.

Two kinds of file, two clocks:
- a JSON document is one file to settle: it is read once it has been quiet
  (`quiet_s`, or `settle_s` when it says the conversation ended, at most
  `max_wait_s` after its first change);
- a JSON Lines log is read as soon as it grows (within `flush_s`), and each
  conversation in it settles on its own clock, by the time its last line came.

Label Studio being down never stops the loop: files stay queued, logs keep
being indexed, and the sync is retried with backoff. A refused key is logged
loudly and retried slowly instead of crashing the service into a restart loop.
The state database being out of reach (PostgreSQL restarting, the network cut)
is the same: everything stays queued and every step waits, with backoff, until
it answers again; what was written before is resolved as after a crash.

Daemons sharing one state (PostgreSQL) each publish a row of `daemons`
(`labelsync status` lists them); a conversation another daemon holds is tried
again a little later.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labelsync.contract import Conversation
from labelsync.debounce import Debouncer
from labelsync.delivery import Stopped
from labelsync.engine import Engine, SyncReport
from labelsync.files import display, examine, is_lines, scan
from labelsync.labelstudio import AccessDenied, BadTasks, Fatal, LabelStudioError, Unavailable
from labelsync.metrics import Metrics
from labelsync.sdnotify import Notifier, WatchdogPacer
from labelsync.sources import open_document
from labelsync.state import DaemonRecord, StateUnavailable
from labelsync.watcher import Watcher, WatcherError

log = logging.getLogger(__name__)

_WAKE_S = 0.5  # longest the loop sleeps without looking at the stop event
_STATUS_EVERY_S = 5.0
_FATAL_RETRY_S = 60.0
_BUSY_RETRY_S = 2.0  # a conversation another daemon holds is tried again after this


@dataclass(frozen=True)
class RunConfig:
    quiet_s: float = 300.0
    max_wait_s: float = 3600.0
    settle_s: float = 2.0
    flush_s: float = 0.25
    rescan_s: float = 300.0
    patterns: tuple[str, ...] = ("*.json", "*.jsonl", "*.ndjson")
    recursive: bool = False
    follow_symlinks: bool = False
    polling: bool = False
    polling_interval_s: float = 2.0
    retry_rejected_s: float = 600.0  # what Label Studio rejected is tried again this often


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
        self.real_root = os.path.realpath(self.root)
        self.hints: queue.Queue[Path] = queue.Queue()
        # Documents: each file settles to quiescence.
        self.settling: Debouncer[Path] = Debouncer(
            config.quiet_s, config.max_wait_s, config.settle_s
        )
        # A second, short clock: a file quiet for settle_s is peeked at once, and
        # sent right away if its content says the conversation has ended.
        self.peeking: Debouncer[Path] = Debouncer(max(config.settle_s, 0.01), config.max_wait_s, 0)
        self.ready: dict[Path, float] = {}  # settled documents, waiting for the batch to flush
        # Logs: read as they grow; each conversation in them settles on its own.
        self.growing: dict[Path, float] = {}  # logs with new bytes, to index
        self.chatting: Debouncer[str] = Debouncer(
            config.quiet_s, config.max_wait_s, config.settle_s
        )
        self.due: dict[str, float] = {}  # settled log conversations
        self.retry: list[str] = []  # documents Label Studio rejected, to read again
        self.watcher: Watcher | None = None
        self.prepared = False
        self.failures = 0
        self.retry_at = 0.0
        self.state_failures = 0
        self.state_retry_at = 0.0  # the state database was out of reach: nothing before this
        self.resumed = False
        self.next_rescan = 0.0
        self.next_status = 0.0
        self.next_retry_rejected = 0.0
        self.totals: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_sync_at: float | None = None
        self.started_at = wall()

    # -- lifecycle -----------------------------------------------------------------------
    def serve(self) -> None:
        self.startup()
        try:
            self.main_loop()
        finally:
            self.shutdown()

    def startup(self) -> None:
        self._start_watcher()
        try:
            self._prepare()
            self._resume_conversations()
            self._rescan()
        except StateUnavailable as exc:
            self._state_down(exc)  # the loop does the rest once the database answers
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
            if now >= self.state_retry_at:
                try:
                    self._step(now)
                    self.state_failures = 0
                except StateUnavailable as exc:
                    self._state_down(exc)
            self._heartbeat(now)

    def _step(self, now: float) -> None:
        """One turn of the loop's work; any step may find the state database away."""
        if not self.prepared and now >= self.retry_at:
            self._prepare()
        if self.prepared and not self.resumed:
            self._resume_conversations()
        if self._watch_lost() or now >= self.next_rescan:
            self._rescan()
        if self.prepared and now >= self.next_retry_rejected:
            self._retry_rejected(now)
        self._collect_due(now)
        if self.growing and now - min(self.growing.values()) >= self.config.flush_s:
            self._index(now)
        if self._should_flush(now):
            self._sync(now)

    def shutdown(self) -> None:
        self.notifier.stopping("stopping")
        if self.watcher is not None:
            self.watcher.stop()
        self._publish(status="stopped")
        log.info("stopped; %d files or conversations were still settling", self.backlog)

    # -- stages --------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        return len(self.settling) + len(self.ready) + len(self.chatting) + len(self.due)

    def _start_watcher(self) -> None:
        try:
            self.watcher = Watcher(
                self.root,
                self.hints.put,
                patterns=self.config.patterns,
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
        except Stopped:
            return  # a stop came while Label Studio was being asked: the loop ends at once
        except LabelStudioError as exc:
            self._failed(exc)
            return
        self.prepared = True

    def _resume_conversations(self) -> None:
        """Log conversations with lines not yet decided: due by the time their last line came."""
        now, wall = self.clock(), self.wall()
        for tailed in self.engine.state.tailed(open_only=True):
            age = max(0.0, wall - tailed.last_at)
            self.chatting.touch(tailed.thread_id, now - age, ended=tailed.ended)
        self.resumed = True

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
        if os.path.lexists(path):
            if is_lines(path):
                self.growing.setdefault(path, now)
            else:
                self.settling.touch(path, now)
                self.peeking.touch(path, now)
            return
        # Deleted (or renamed away) before it settled: dropped. A task already in
        # Label Studio stays; only labelsync's note of the file goes.
        self.settling.forget(path)
        self.peeking.forget(path)
        self.ready.pop(path, None)
        self.growing.pop(path, None)
        self._forget([display(path)])

    def _forget(self, keys: list[str]) -> None:
        try:
            with self.engine.state.transaction() as tx:
                for key in keys:
                    tx.forget_file(key)
        except StateUnavailable as exc:  # the next rescan finds them gone again
            log.warning("not forgetting %d deleted files yet: %s", len(keys), exc)

    def _rescan(self) -> None:
        """Events are hints: a full scan finds what the watcher missed or never saw."""
        now, wall = self.clock(), self.wall()
        known = self.engine.state.files()
        for found in scan(
            self.root, self.config.patterns, self.config.recursive, self.config.follow_symlinks
        ):
            record = known.pop(display(found.path), None)
            path = found.path
            if found.stat is None:
                if record is None or record.status != "skipped" or record.reason != found.problem:
                    self.ready.setdefault(path, now)  # recorded once, with its reason
                continue
            if record is not None and record.stat == found.stat and record.status != "unreadable":
                continue
            if path in self.ready or path in self.settling or path in self.growing:
                continue
            if is_lines(path):
                self.growing.setdefault(path, now)
                continue
            age = max(0.0, wall - found.stat.mtime_ns / 1e9)
            if age >= self.config.quiet_s:
                self.ready.setdefault(path, now)  # changed while labelsync was away
            else:
                self.settling.touch(path, now - age)
                self.peeking.touch(path, now - age)
        gone = [key for key in known if Path(key).is_relative_to(self.root)]
        if gone:  # files deleted while nobody watched
            self._forget(gone)
        self.next_rescan = now + self.config.rescan_s

    def _watch_lost(self) -> bool:
        """Events were lost, or the watched directory is gone or another: watch again, rescan."""
        watcher = self.watcher
        if watcher is not None and watcher.overflowed.is_set():
            log.warning("file events were lost (inotify queue overflow); rescanning now")
            watcher.overflowed.clear()
            return True
        if watcher is not None and watcher.alive and watcher.watching_root:
            return False
        if watcher is None and not os.path.isdir(self.root):
            return False  # nothing to watch yet; rescans find it when it appears
        if watcher is not None:
            self._error(
                f"the watch directory {self.root} was removed or replaced; watching it again"
            )
            watcher.stop()
        self._start_watcher()
        return self.watcher is not None

    def _retry_rejected(self, now: float) -> None:
        paths = self.engine.retry_rejected()
        self.next_retry_rejected = now + self.config.retry_rejected_s
        for thread in self._reopened():
            self.due.setdefault(thread, now)
        if paths:
            log.info("trying again %d files Label Studio rejected before", len(paths))
            self.retry = sorted(set(self.retry) | set(paths))
            for key in paths:
                self.ready.setdefault(Path(key), now)

    def _reopened(self) -> list[str]:
        open_ = self.engine.state.tailed(open_only=True)
        return [
            t.thread_id
            for t in open_
            if t.thread_id not in self.chatting and t.thread_id not in self.due
        ]

    def _collect_due(self, now: float) -> None:
        for path in self.peeking.due(now):
            if self._has_ended(path):
                self.settling.forget(path)
                self.ready.setdefault(path, now)
        for path in self.settling.due(now):
            self.peeking.forget(path)
            self.ready.setdefault(path, now)
        for thread in self.chatting.due(now):
            self.due.setdefault(thread, now)

    def _has_ended(self, path: Path) -> bool:
        try:
            doc = open_document(path, self.engine.config.options, self.engine.config.max_file_bytes)
            entry = next(doc.entries, None)
        except Exception:  # whatever it is, the full quiet period decides
            return False
        return (
            not doc.many
            and entry is not None
            and isinstance(entry.parsed, Conversation)
            and entry.parsed.ended
        )

    def _should_flush(self, now: float) -> bool:
        waiting = list(self.ready.values()) + list(self.due.values())
        if not waiting or not self.prepared or now < self.retry_at:
            return False
        return (
            len(waiting) >= self.engine.config.batch_size
            or now - min(waiting) >= self.config.flush_s
        )

    def _index(self, now: float) -> None:
        """New lines of logs: which conversation each belongs to; those start settling."""
        paths = list(self.growing)
        found = [f for p in paths if (f := examine(p, self.real_root, self.config.follow_symlinks))]
        report = self.engine.index(found)  # the state away: they stay growing, read again
        for path in paths:
            self.growing.pop(path, None)
        for path in report.unsettled:
            self.growing.setdefault(path, now)
        for thread, ended in report.touched.items():
            self.due.pop(thread, None)
            self.chatting.touch(thread, now, ended=ended)
        self._count(report)

    def _sync(self, now: float) -> None:
        paths, threads = list(self.ready), list(self.due)
        found = [f for p in paths if (f := examine(p, self.real_root, self.config.follow_symlinks))]
        try:
            report = self.engine.sync(found, force=self.retry, wait_busy=False)
            if threads:
                tailed = self.engine.sync_tailed(threads, wait_busy=False)
                report.tally.update(tailed.tally)
                report.sent.extend(tailed.sent)
                report.busy_threads |= tailed.busy_threads
        except Stopped:
            return
        except LabelStudioError as exc:
            self._failed(exc)
            return
        self.retry = []
        for path in paths:
            self.ready.pop(path, None)
        for thread in threads:
            self.due.pop(thread, None)
        for path in report.unsettled:  # written to while read: settle again
            self.settling.touch(path, now)
        # Held by another daemon of this state: due again shortly (the files were not
        # recorded as read, so they are read and decided again then).
        later = now + _BUSY_RETRY_S
        for key in report.busy_paths:
            self.ready.setdefault(Path(key), later)
        for thread in report.busy_threads:
            self.due.setdefault(thread, later)
        self.failures, self.last_sync_at = 0, self.wall()
        if self.last_error:
            log.info("Label Studio reachable again; backlog %d", self.backlog)
            self.last_error = None
        self.totals.update(report.tally)
        self._count(report)

    def _count(self, report: SyncReport) -> None:
        if self.metrics is None:
            return
        tally, wall = report.tally, self.wall()
        m = self.metrics
        m.files_seen.inc(tally["files"] - tally["unchanged"])
        m.tasks_created.inc(tally["new_tasks"] + tally["new_versions"])
        m.versions.inc(tally["new_versions"])
        m.duplicates_skipped.inc(tally["duplicates"])
        m.quarantined.inc(tally["quarantined"])
        m.not_sampled.inc(tally["not_sampled"])
        m.deferred.inc(tally["deferred"])
        m.retired.inc(tally["retired"])
        for key, n in tally.items():
            if key.startswith("rule:"):
                m.rule_matches.labels(rule=key[5:]).inc(n)
            elif key.startswith("redacted:"):
                m.redacted.labels(detector=key[9:]).inc(n)
        for _, changed_at in report.sent:
            m.import_latency.observe(max(0.0, wall - changed_at))

    def _failed(self, exc: LabelStudioError) -> None:
        self.failures += 1
        if isinstance(exc, Fatal):
            delay = _FATAL_RETRY_S
            log.error("%s; %d waiting; retrying in %.0f s", exc, self.backlog, delay)
        else:
            ceiling = min(60.0, 2.0**self.failures)
            delay = random.uniform(ceiling / 2, ceiling)
            retry_after = getattr(exc, "retry_after_s", None)
            if isinstance(exc, Unavailable) and retry_after:
                delay = max(delay, retry_after)
            log.warning("%s; %d waiting; retrying in %.1f s", exc, self.backlog, delay)
        self.last_error = str(exc)
        self.retry_at = self.clock() + delay
        if self.metrics is not None:
            self.metrics.label_studio_error(_kind(exc))

    def _state_down(self, exc: StateUnavailable) -> None:
        """The state database is out of reach: everything stays queued; wait, then go on.
        Nothing is lost: what was committed is there, what was not is done again, and
        an import of unknown outcome is in the outbox (resolved as after a crash)."""
        self.state_failures += 1
        ceiling = min(15.0, 2.0**self.state_failures)
        delay = random.uniform(ceiling / 2, ceiling)
        log.warning("%s; %d waiting; trying again in %.1f s", exc, self.backlog, delay)
        self.last_error = str(exc)
        self.state_retry_at = self.clock() + delay

    def _error(self, message: str) -> None:
        self.last_error = message
        log.error("%s", message)

    # -- telling people ----------------------------------------------------------------
    def _sleep_s(self) -> float:
        now = self.clock()
        wake = [now + _WAKE_S, self.next_rescan, self.next_status]
        for debouncer in (self.settling, self.peeking, self.chatting):
            deadline = debouncer.next_deadline()
            if deadline is not None:
                wake.append(deadline)
        if self.growing:
            wake.append(min(self.growing.values()) + self.config.flush_s)
        waiting = list(self.ready.values()) + list(self.due.values())
        if waiting:
            wake.append(max(self.retry_at, min(waiting) + self.config.flush_s))
        return max(min(wake), min(self.state_retry_at, now + _WAKE_S)) - now

    def _heartbeat(self, now: float) -> None:
        # Pinged from the loop that does the work: if a sync hangs, pings stop.
        self.ping()
        if self.metrics is not None:
            self.metrics.backlog.set(self.backlog)
        if now >= self.next_status:
            self.notifier.status(self._status_line())
            if now >= self.state_retry_at:  # while the database is away, no call waits on it
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
        """This daemon's row in `daemons`: what `labelsync status` shows about it."""
        identity = self.engine.state.identity
        try:
            self.engine.state.publish(
                DaemonRecord(
                    owner=identity.owner,
                    name=identity.name,
                    pid=identity.pid,
                    status=status,
                    started_at=self.started_at,
                    seen_at=self.wall(),
                    backlog=self.backlog,
                    last_sync=self.last_sync_at,
                    last_error=self.last_error,
                    watch_dir=str(self.root),
                    totals=dict(self.totals),
                )
            )
        except StateUnavailable as exc:  # the loop meets the outage too, and says so
            log.debug("status not published: %s", exc)


def _kind(exc: LabelStudioError) -> str:
    if isinstance(exc, AccessDenied):
        return "auth"
    if isinstance(exc, BadTasks):
        return "rejected"
    if isinstance(exc, Unavailable):
        return exc.kind
    return "other"
