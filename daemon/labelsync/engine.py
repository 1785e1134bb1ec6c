"""The pipeline both `backfill` and `run` drive.

    read (labelsync.intake) -> plan (labelsync.plan, pure) -> deliver -> record

    prepare()        once per start: tie the state to the project, rebuild it
                     from Label Studio if it is new;
    sync(files)      what changed on disk: JSON documents become decided
                     conversations; JSON Lines logs are indexed (which lines
                     make which conversation) and their conversations marked due;
    sync_tailed()    conversations of logs that are due, rebuilt from their lines.

Exactly once rests on three facts: a version is put in the outbox (committed)
before its import is sent; it is recorded as sent (committed) only after Label
Studio answered with its task id; and an outbox row found later is resolved
by asking Label Studio for its sync key. A log's read offset is committed with
the lines it covers, so a kill -9 loses no line and indexes none twice.

Several daemons may share one state (PostgreSQL): a conversation is claimed
before it is sent (sending.py, lease.py). One another daemon holds is left
for later: `SyncReport.busy_paths` / `busy_threads` for the daemon's loop to
try again; a backfill (`wait_busy`) waits for them, at most two leases long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from labelsync import intake
from labelsync.delivery import Delivery
from labelsync.files import FileStat, Found, Unreadable, Unsettled, display, is_lines
from labelsync.intake import Item, ReadConfig, Work
from labelsync.labelstudio import LabelStudio
from labelsync.lease import Leases, LeaseTimes
from labelsync.project import Project
from labelsync.readers.base import Options
from labelsync.redact import Redactor
from labelsync.rules import Rules
from labelsync.sending import Caps, Sender
from labelsync.state import (
    ConversationRecord,
    FileRecord,
    State,
    Tailed,
)
from labelsync.tail import index
from labelsync.targets import Connect, Target, Targets

log = logging.getLogger(__name__)

# Tally keys, in the order the backfill summary prints them.
OUTCOMES = (
    "files",
    "unchanged",
    "conversations",
    "new_tasks",
    "new_versions",
    "duplicates",
    "feedback",
    "waiting",
    "too_short",
    "not_sampled",
    "deferred",
    "quarantined",
    "skipped",
    "changing",
    "recovered",
    "retired",
    "busy",
)


@dataclass(frozen=True)
class EngineConfig:
    root: Path
    min_turns: int = 2
    batch_size: int = 1000
    max_file_bytes: int = 10 * 1024 * 1024
    options: Options = field(default_factory=Options)
    max_wait_s: float = 3600.0  # quiet this long: a short conversation will not grow
    keep_versions: bool = False  # False: earlier versions nobody worked on are retired
    rules: Rules | None = None  # sampling and routing; None: everything to the default project
    caps: Caps = field(default_factory=Caps)
    redactor: Redactor = field(default_factory=Redactor)


@dataclass
class SyncReport:
    """What one sync did: counts for people, paths and conversations for the daemon."""

    tally: Counter[str] = field(default_factory=Counter)
    unsettled: list[Path] = field(default_factory=list)  # changed while read: look again
    sent: list[tuple[str, float]] = field(default_factory=list)  # (file, its last change): sent
    touched: dict[str, bool] = field(default_factory=dict)  # log conversations due: -> ended
    # Held by another daemon of this state: try again (documents by file, logs by thread).
    busy_paths: set[str] = field(default_factory=set)
    busy_threads: set[str] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        state: State,
        ls: LabelStudio,
        delivery: Delivery,
        config: EngineConfig,
        stop: threading.Event,
        heartbeat: Callable[[], object] = lambda: None,
        now: Callable[[], float] = time.time,
        connect: Connect | None = None,
    ) -> None:
        """connect(project_id): a connection and delivery for a project rules route to."""
        self.state = state
        self.ls = ls
        self.delivery = delivery
        self.config = config
        self.stop = stop
        # Called between steps that may each take a request's time: the daemon's
        # systemd watchdog ping, so a long backlog is not mistaken for a hang.
        self.heartbeat = heartbeat
        self.now = now
        self.project_id = ls.project_id
        self.project = Project(state, ls, delivery, config.keep_versions)
        rules = config.rules or Rules(ls.project_id)
        self.targets = Targets(
            state, Target(ls, delivery, self.project), rules, connect, config.keep_versions
        )
        self.leases = Leases(state, LeaseTimes.for_imports(ls.import_timeout_s, ls.timeout_s))
        self.leases.start()
        self.sender = Sender(
            state, self.targets, config.min_turns, config.caps, now, self.leases, stop
        )
        self._read = ReadConfig(
            config.root, config.options, config.max_file_bytes, config.max_wait_s,
            config.redactor,
        )  # fmt: skip

    def close(self) -> None:
        """Stop renewing leases (what is still held runs out, or was released)."""
        self.leases.close()

    # -- start-up ------------------------------------------------------------------------
    def prepare(self) -> Counter[str]:
        tally: Counter[str] = Counter()
        self.state.bind(self.ls.url, self.project_id)
        if self.state.get_meta("rebuilt") is None:
            # A new (or lost) state learns what is already in the project before sending.
            tally["recovered"] += self.project.rebuild()
            self.state.set_meta("rebuilt", str(time.time()))
        self.targets.resolve_titles()
        return tally

    def retry_rejected(self) -> list[str]:
        """What Label Studio rejected (the project's config may have changed) and what a cap
        held back are tried again: reopens such conversations of logs, returns the
        documents to read again."""
        rejected = self.state.with_status("rejected") + self.state.with_status("deferred")
        threads = [key for path, key in rejected if is_lines(Path(path))]
        if threads:
            with self.state.transaction() as tx:
                tx.reopen_tailed(threads)
        return sorted({path for path, _ in rejected if not is_lines(Path(path))})

    # -- files ---------------------------------------------------------------------------
    def sync(
        self,
        found: Iterable[Found],
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
        recheck: bool = False,
        final: bool = False,
        force: Iterable[str] = (),
        wait_busy: bool | None = None,
    ) -> SyncReport:
        """Bring Label Studio in step with these files; returns what happened.

        JSON documents are read, decided and sent. JSON Lines logs are indexed
        (`index`); their conversations are sent by `sync_tailed` once due.
        An outbox left by an earlier failure is resolved first, so a retry after
        an import of unknown outcome never sends that import blindly again.
        `recheck` decides every file again, even unchanged ones; content already
        sent is still recognised by its sync key. `final`: the files are
        complete (a backfill): a log's last line is taken without its newline.
        `force`: documents to read again although unchanged (a retry).
        `wait_busy` (default: `final`): documents with a conversation another daemon
        holds are read again until it is let go, at most two leases long; otherwise
        they are returned in `busy_paths`.
        """
        report = SyncReport()
        advance = progress or (lambda n: None)
        entries = list(found)
        known = self.state.files_for(display(f.path) for f in entries)
        forced = set(force)
        changed = self._changed(entries, known, recheck, forced, report)
        advance(len(entries) - len(changed))
        logs = [e for e in changed if e.stat is not None and is_lines(e.path)]
        self._index_all(logs, known, report, dry_run, final, advance)
        documents = _oldest_first(e for e in changed if e.stat is None or not is_lines(e.path))
        if not documents or self.stop.is_set():
            return report
        if not dry_run:
            report.tally["recovered"] += self.sender.resolve_outbox()
        stream = intake.documents(
            documents, known, self._read, reread=lambda p: recheck or p in forced, now=self.now
        )
        self._pipeline(stream, report, dry_run, advance)
        if final if wait_busy is None else wait_busy:
            by_key = {display(e.path): e for e in documents}
            for _ in self._until_let_go(report.busy_paths):
                again = [by_key[p] for p in sorted(report.busy_paths) if p in by_key]
                report.busy_paths.clear()
                stream = intake.documents(
                    again,
                    self.state.files_for(display(e.path) for e in again),
                    self._read,
                    reread=lambda p: recheck or p in forced,
                    now=self.now,
                )
                self._pipeline(stream, report, dry_run, lambda n: None)
        report.tally["busy"] = len(report.busy_paths) + len(report.busy_threads)
        return report

    def _until_let_go(self, busy: set[str]) -> Iterator[None]:
        """Yields while `busy` holds something, pausing first; at most two leases long
        (a daemon that died lets go within one)."""
        deadline = time.monotonic() + 2 * self.leases.times.lease_s
        pause_s = 0.5
        while busy and not self.stop.is_set() and time.monotonic() < deadline:
            log.info("%d held by another labelsync; trying again in %.1f s", len(busy), pause_s)
            if self.stop.wait(pause_s):
                return
            pause_s = min(pause_s * 2, 5.0)
            yield

    def index(self, found: Iterable[Found], final: bool = False) -> SyncReport:
        """Only the logs' new lines: which conversation each belongs to (no Label Studio)."""
        report = SyncReport()
        entries = [f for f in found if f.stat is not None and is_lines(f.path)]
        known = self.state.files_for(display(f.path) for f in entries)
        changed = self._changed(entries, known, False, set(), report)
        self._index_all(changed, known, report, False, final, lambda n: None)
        return report

    def _changed(
        self,
        entries: list[Found],
        known: dict[str, FileRecord],
        recheck: bool,
        forced: set[str],
        report: SyncReport,
    ) -> list[Found]:
        changed: list[Found] = []
        for entry in entries:
            key = display(entry.path)
            record = known.get(key)
            if (
                not recheck
                and entry.stat is not None
                and record is not None
                and record.stat == entry.stat
                and record.status != "unreadable"
                and key not in forced
            ):
                report.tally["unchanged"] += 1
            else:
                changed.append(entry)
        report.tally["files"] += len(entries)
        return changed

    def _index_all(
        self,
        logs: list[Found],
        known: dict[str, FileRecord],
        report: SyncReport,
        dry_run: bool,
        final: bool,
        advance: Callable[[int], None],
    ) -> None:
        for entry in logs:
            if self.stop.is_set():
                return
            self._index(entry, known.get(display(entry.path)), report, dry_run, final)
            advance(1)

    def _index(
        self, entry: Found, known: FileRecord | None, report: SyncReport, dry_run: bool, final: bool
    ) -> None:
        """Keep which new lines of a log make which conversation; mark those due."""
        key = display(entry.path)
        try:
            for batch in index(
                entry.path,
                key,
                known.head if known is not None else None,
                self.state.log_position,
                self.config.options,
                self.config.max_file_bytes,
                final=final,
            ):
                bad = [
                    ConversationRecord(
                        key,
                        line.position,
                        None,
                        "quarantined",
                        line.problem.reason if line.problem else "unreadable",
                        line.position,
                    )
                    for line in batch.bad
                ]
                for line in batch.bad:
                    log.warning(
                        "quarantined %s %s: %s",
                        key,
                        line.position,
                        line.problem.reason if line.problem else "unreadable",
                    )
                report.tally["quarantined"] += len(bad)
                report.touched.update(batch.touched)
                if dry_run:
                    continue
                now = self.now()
                with self.state.transaction() as tx:
                    if batch.stale_head is not None:  # rewritten in place
                        tx.drop_lines_of(batch.stale_head)
                        tx.keep_only_conversations(key, [])
                    for ref, whole in batch.refs:
                        if whole:
                            tx.replace_lines(ref.thread_id, [ref])
                        else:
                            tx.add_lines([ref])
                    tx.put_tailed(
                        Tailed(t, key, now, ended, True) for t, ended in batch.touched.items()
                    )
                    tx.put_conversations(bad)
                    if batch.position is not None:
                        tx.put_logs([batch.position])
                    if batch.record is not None:
                        tx.put_files([batch.record])
                self.heartbeat()
        except Unsettled:
            report.tally["changing"] += 1
            report.unsettled.append(entry.path)
        except Unreadable as exc:
            status = "unreadable" if exc.retry else "skipped"
            report.tally["quarantined" if exc.retry else "skipped"] += 1
            log.warning("%s %s: %s", "quarantined" if exc.retry else "skipped", key, exc.reason)
            if not dry_run:
                with self.state.transaction() as tx:
                    tx.put_files(
                        [
                            FileRecord(
                                key, exc.stat or entry.stat or FileStat(0, 0, 0), status, exc.reason
                            )
                        ]
                    )

    # -- conversations of logs -----------------------------------------------------------
    def sync_tailed(
        self,
        thread_ids: Iterable[str] | None = None,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
        wait_busy: bool = True,
    ) -> SyncReport:
        """Conversations of logs that are due (default: every one with new lines).
        `wait_busy`: as `sync`'s; otherwise those held are returned in `busy_threads`."""
        report = SyncReport()
        if not dry_run:
            report.tally["recovered"] += self.sender.resolve_outbox()
        self._tailed(thread_ids, report, dry_run, progress or (lambda n: None))
        if wait_busy:
            for _ in self._until_let_go(report.busy_threads):
                again = set(report.busy_threads)
                report.busy_threads.clear()
                self._tailed(again, report, dry_run, lambda n: None)
        report.tally["busy"] = len(report.busy_paths) + len(report.busy_threads)
        return report

    def _tailed(
        self,
        thread_ids: Iterable[str] | None,
        report: SyncReport,
        dry_run: bool,
        progress: Callable[[int], None],
    ) -> None:
        threads = self.state.tailed(open_only=True)
        if thread_ids is not None:
            wanted = set(thread_ids)
            threads = [t for t in threads if t.thread_id in wanted]
        if not threads:
            return
        reader = self.state.share()  # the reader thread's own connection, same daemon
        size = self.config.batch_size

        def batches() -> Iterator[tuple[list[Tailed], dict[str, list]]]:
            for start in range(0, len(threads), size):
                chunk = threads[start : start + size]
                yield chunk, reader.lines_of(t.thread_id for t in chunk)

        try:
            stream = intake.assembled(batches(), self._read, now=self.now)
            self._pipeline(stream, report, dry_run, progress)
        finally:
            reader.close()

    # -- decide, deliver, record ---------------------------------------------------------
    def _pipeline(
        self,
        stream: Iterator[Item],
        report: SyncReport,
        dry_run: bool,
        advance: Callable[[int], None],
    ) -> None:
        """Chunks of conversations: read the next while this one is imported."""
        chunks = _chunked(stream, self.config.batch_size)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelsync-read") as reader:
            ahead: Future[list[Item] | None] | None = reader.submit(next, chunks, None)
            while ahead is not None:
                chunk = ahead.result()
                ahead = None
                if chunk is None or self.stop.is_set():
                    break

                def read_next() -> None:
                    nonlocal ahead
                    if ahead is None:
                        ahead = reader.submit(next, chunks, None)

                sent = self.sender.handle(
                    chunk, report.tally, dry_run, read_next, report.busy_paths
                )
                report.unsettled.extend(Path(p) for p in sent.unsettled)
                report.sent.extend(sent.sent)
                report.busy_threads.update(w.key for w in sent.busy if w.tailed)
                read_next()
                self.heartbeat()
                advance(sum(1 for item in chunk if not isinstance(item, Work)))


# A chunk's conversations are held in memory until they are sent (and the next chunk is
# read meanwhile): bounded by bytes as well as by count, so 300 files of 5 MB do not
# take 1.5 GB.
CHUNK_BYTES = 32 * 1024 * 1024


def _chunked(
    stream: Iterator[Item], size: int, max_bytes: int = CHUNK_BYTES
) -> Iterator[list[Item]]:
    """Lists of items holding at most `size` conversations, and about `max_bytes`, each."""
    while True:
        chunk: list[Item] = []
        works = weight = 0
        for item in stream:
            chunk.append(item)
            if isinstance(item, Work):
                works += 1
                weight += item.weight
                if works >= size or weight >= max_bytes:
                    break
        if not chunk:
            return
        yield chunk


def _oldest_first(found: Iterable[Found]) -> list[Found]:
    """Older writes first, so snapshots of one conversation become versions in order."""
    return sorted(found, key=lambda f: (f.stat.mtime_ns if f.stat else 0, display(f.path)))
