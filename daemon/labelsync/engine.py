"""The pipeline both `backfill` and `run` drive: read -> parse -> plan -> deliver -> record.

    prepare()   once per start: tie state to the project, rebuild it from Label
                Studio if it is new;
    sync(paths) any number of times: resolve the outbox a crash or a failed
                import left, then what changed becomes tasks.

Exactly once rests on three facts: a version is put in the outbox (committed)
before its import is sent; it is recorded as sent (committed) only after Label
Studio answered with its task id; and an outbox row found at start is resolved
by asking Label Studio for its sync_key.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from labelsync.contract import Conversation, Fields, InvalidConversation, parse
from labelsync.delivery import Delivery, Outgoing
from labelsync.files import FileRead, FileStat, TooLarge, Unsettled, read_stable
from labelsync.labelstudio import LabelStudio
from labelsync.plan import NewVersion, Skip, Wait, plan
from labelsync.state import FileRecord, Pending, State, VersionRecord
from labelsync.task import TaskDraft, draft_task

log = logging.getLogger(__name__)

# Tally keys, in the order the backfill summary prints them.
OUTCOMES = (
    "files",
    "unchanged",
    "new_tasks",
    "new_versions",
    "duplicates",
    "waiting",
    "quarantined",
    "changing",
    "recovered",
)


@dataclass(frozen=True)
class EngineConfig:
    root: Path
    min_turns: int = 2
    batch_size: int = 1000
    max_file_bytes: int = 10 * 1024 * 1024
    fields: Fields = field(default_factory=Fields)


@dataclass
class SyncReport:
    """What one sync did: counts for people, paths for the daemon's next step."""

    tally: Counter[str] = field(default_factory=Counter)
    unsettled: list[Path] = field(default_factory=list)  # changed while read: look again
    sent: list[tuple[Path, FileStat]] = field(default_factory=list)  # became tasks


@dataclass
class _Parsed:
    read: FileRead
    parsed: Conversation | InvalidConversation
    draft: TaskDraft | None = None  # the task but its version, for a Conversation


_FileUpdate = tuple[str, FileStat, str, str | None, str, str | None]


@dataclass
class _Reads:
    """One chunk as the reader thread leaves it for planning."""

    to_plan: list[_Parsed] = field(default_factory=list)
    updates: list[_FileUpdate] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)
    unsettled: list[Path] = field(default_factory=list)

    def merge_into(self, report: SyncReport) -> None:
        report.tally.update(self.tally)
        report.unsettled.extend(self.unsettled)


class Engine:
    def __init__(
        self,
        state: State,
        ls: LabelStudio,
        delivery: Delivery,
        config: EngineConfig,
        stop: threading.Event,
        heartbeat: Callable[[], object] = lambda: None,
    ) -> None:
        self.state = state
        self.ls = ls
        self.delivery = delivery
        self.config = config
        self.stop = stop
        # Called between steps that may each take a request's time: the daemon's
        # systemd watchdog ping, so a long backlog is not mistaken for a hang.
        self.heartbeat = heartbeat

    # -- start-up ------------------------------------------------------------------------
    def prepare(self) -> Counter[str]:
        tally: Counter[str] = Counter()
        self.state.bind(self.ls.url, self.ls.project_id)
        if self.state.get_meta("rebuilt") is None:
            tally["recovered"] += self._rebuild()
        return tally

    def _rebuild(self) -> int:
        """A new (or lost) state learns what is already in the project before sending."""
        remote = [
            VersionRecord(v.thread_id, v.version, v.sync_key, v.task_id, v.source_file)
            for v in self.ls.labelsync_versions()
        ]
        with self.state.transaction() as db:
            self.state.add_versions(db, remote)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('rebuilt', ?)", (str(time.time()),))
        if remote:
            log.info("state rebuilt from Label Studio: %d existing versions", len(remote))
        return len(remote)

    def _resolve_outbox(self) -> int:
        pending = self.state.pending()
        if not pending:
            return 0
        # An import sent just before a crash may still be running in Label Studio:
        # its outcome is unknown until the request's own deadline has passed.
        settle_until = max(p.sent_at for p in pending) + self.ls.timeout_s
        delay = settle_until - time.time()
        if delay > 0:
            log.info("waiting %.0f s for imports interrupted by a crash to settle", delay)
            self.delivery.pause(delay)
        found = self.delivery.resolve([p.sync_key for p in pending])
        by_key = {p.sync_key: p for p in pending}
        with self.state.transaction() as db:
            self.state.add_versions(
                db,
                [
                    VersionRecord(
                        p.thread_id, p.version, p.sync_key, found[p.sync_key], p.source_file
                    )
                    for p in pending
                    if p.sync_key in found
                ],
            )
            self.state.drop_outbox(db, by_key)
        log.info(
            "outbox resolved: %d imported before the interruption, %d to send again",
            len(found),
            len(pending) - len(found),
        )
        return len(found)

    # -- the pipeline --------------------------------------------------------------------
    def sync(
        self,
        paths: Iterable[tuple[Path, FileStat | None]],
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
        recheck: bool = False,
    ) -> SyncReport:
        """Bring Label Studio in step with these files; returns what happened.

        An outbox left by an earlier failure is resolved first, so a retry after
        an import of unknown outcome never sends that import blindly again.
        `recheck` decides every file again, even unchanged ones (after a change
        of LABELSYNC_MIN_TURNS or of the fields read); content already sent is
        still recognised by its sync key.
        """
        report = SyncReport()
        if not dry_run:
            report.tally["recovered"] += self._resolve_outbox()
        ordered = _oldest_first(paths)
        size = self.config.batch_size
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        # Reading and parsing the next chunk overlaps with importing this one (time
        # spent waiting on Label Studio). It starts only once this chunk's state
        # writes are done: the reader holds the GIL, and SQLite needs it per row.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelsync-read") as reader:
            pending = self._read_ahead(reader, chunks, 0, recheck)
            for index in range(len(chunks)):
                reads = pending.result() if pending else _Reads()
                pending = None
                if self.stop.is_set():
                    break

                def read_next(index: int = index) -> None:
                    nonlocal pending
                    pending = self._read_ahead(reader, chunks, index + 1, recheck)

                reads.merge_into(report)
                self._plan_and_deliver(reads, report, dry_run, read_next)
                if pending is None:
                    read_next()
                self.heartbeat()
                if progress:
                    progress(len(chunks[index]))
        return report

    def _read_ahead(
        self,
        reader: ThreadPoolExecutor,
        chunks: list[list[tuple[Path, FileStat]]],
        index: int,
        recheck: bool,
    ) -> Future[_Reads] | None:
        if index >= len(chunks) or self.stop.is_set():
            return None
        # State is read here, on the calling thread; the reader only touches files.
        known = {} if recheck else self.state.files_for(str(p) for p, _ in chunks[index])
        return reader.submit(self._read_chunk, chunks[index], known)

    def _read_chunk(
        self, chunk: Sequence[tuple[Path, FileStat]], known: dict[str, FileRecord]
    ) -> _Reads:
        """Runs on the reader thread: files only, no state, no shared counters."""
        reads = _Reads()
        reads.tally["files"] += len(chunk)
        for path, stat in chunk:
            record = known.get(str(path))
            if record is not None and record.stat == stat:
                reads.tally["unchanged"] += 1
                continue
            item = self._read(path, record, reads)
            if item is not None:
                reads.to_plan.append(item)
        return reads

    def _plan_and_deliver(
        self,
        reads: _Reads,
        report: SyncReport,
        dry_run: bool,
        while_importing: Callable[[], None] = lambda: None,
    ) -> None:
        tally, updates, to_plan = report.tally, reads.updates, reads.to_plan
        sent_by_thread = {
            thread: {v.sync_key: v.version for v in versions}
            for thread, versions in self.state.versions_of(
                p.parsed.thread_id for p in to_plan if isinstance(p.parsed, Conversation)
            ).items()
        }
        outgoing: list[tuple[_Parsed, int]] = []
        for item, decision in plan(
            ((p, p.parsed) for p in to_plan), sent_by_thread, self.config.min_turns
        ):
            read, thread = item.read, _thread(item.parsed)
            if isinstance(decision, NewVersion):
                outgoing.append((item, decision.version))
                continue
            if isinstance(decision, Skip):
                tally["duplicates"] += 1
                status = "synced"
            elif isinstance(decision, Wait):
                tally["waiting"] += 1
                status = "waiting"
            else:
                tally["quarantined"] += 1
                status = "quarantined"
                log.warning("quarantined %s: %s", read.path, decision.reason)
            updates.append(
                (str(read.path), read.stat, read.sha256, thread, status, decision.reason)
            )

        if dry_run:
            for _, version in outgoing:
                tally["new_tasks" if version == 1 else "new_versions"] += 1
            return
        self._deliver(outgoing, updates, report, while_importing)

    def _read(self, path: Path, record: FileRecord | None, reads: _Reads) -> _Parsed | None:
        try:
            read = read_stable(path, self.config.max_file_bytes)
        except Unsettled:
            reads.tally["changing"] += 1  # picked up on the next pass, never quarantined
            reads.unsettled.append(path)
            return None
        except TooLarge as exc:
            reads.tally["quarantined"] += 1
            log.warning("quarantined %s: %s", path, exc)
            reads.updates.append((str(path), exc.stat, "", None, "quarantined", str(exc)))
            return None
        if record is not None and record.sha256 == read.sha256:
            # Touched, not changed (same bytes): keep the decision, learn the new stat.
            reads.tally["unchanged"] += 1
            reads.updates.append(
                (str(path), read.stat, read.sha256, record.thread_id, record.status, record.reason)
            )
            return None
        try:
            conversation = parse(read.raw, path.name, self.config.fields)
        except InvalidConversation as invalid:
            return _Parsed(read, invalid)
        draft = draft_task(conversation, _relative(path, self.config.root))
        return _Parsed(read, conversation, draft)

    def _deliver(
        self,
        outgoing: list[tuple[_Parsed, int]],
        updates: list[_FileUpdate],
        report: SyncReport,
        while_importing: Callable[[], None] = lambda: None,
    ) -> None:
        tally = report.tally
        now = time.time()
        batch = []
        for item, version in outgoing:
            conversation, draft = item.parsed, item.draft
            assert isinstance(conversation, Conversation) and draft is not None
            source = draft.data["source_file"]
            batch.append(
                (
                    item,
                    Pending(conversation.sync_key, conversation.thread_id, version, source, now),
                    Outgoing(conversation.sync_key, draft.numbered(version)),
                )
            )
        with self.state.transaction() as db:
            self.state.put_files(db, updates)
            self.state.put_outbox(db, [pending for _, pending, _ in batch])
        if not batch:
            return

        started = time.monotonic()
        while_importing()
        delivered = self.delivery.send([out for _, _, out in batch])
        tally["recovered"] += delivered.found_existing
        log.debug(
            "imported %d tasks in %.2f s", len(delivered.task_ids), time.monotonic() - started
        )

        versions, files = [], []
        for item, pending, _ in batch:
            read, key = item.read, pending.sync_key
            if key in delivered.task_ids:
                task_id = delivered.task_ids[key]
                versions.append(
                    VersionRecord(
                        pending.thread_id, pending.version, key, task_id, pending.source_file
                    )
                )
                files.append(
                    (
                        str(read.path),
                        read.stat,
                        read.sha256,
                        pending.thread_id,
                        "synced",
                        f"version {pending.version}, task {task_id}",
                    )
                )
                tally["new_tasks" if pending.version == 1 else "new_versions"] += 1
                report.sent.append((read.path, read.stat))
                log.info(
                    "sent %s as version %d (task %d) from %s",
                    pending.thread_id,
                    pending.version,
                    task_id,
                    pending.source_file,
                )
            else:
                reason = delivered.rejected.get(key, "not imported")
                files.append(
                    (
                        str(read.path),
                        read.stat,
                        read.sha256,
                        pending.thread_id,
                        "quarantined",
                        reason,
                    )
                )
                tally["quarantined"] += 1
                log.warning("quarantined %s: %s", read.path, reason)
        with self.state.transaction() as db:
            self.state.add_versions(db, versions)
            self.state.put_files(db, files)
            self.state.drop_outbox(db, [pending.sync_key for _, pending, _ in batch])


def _oldest_first(paths: Iterable[tuple[Path, FileStat | None]]) -> list[tuple[Path, FileStat]]:
    """Older writes first, so snapshots of one conversation become versions in order."""
    stated = []
    for path, stat in paths:
        if stat is None:
            try:
                stat = FileStat.of(os.stat(path))
            except FileNotFoundError:
                continue
        stated.append((path, stat))
    stated.sort(key=lambda item: (item[1].mtime_ns, str(item[0])))
    return stated


def _thread(parsed: Conversation | InvalidConversation) -> str | None:
    return parsed.thread_id if isinstance(parsed, Conversation) else None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
