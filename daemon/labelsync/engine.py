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
from labelsync.contract import Conversation
from labelsync.delivery import Delivery, Outgoing
from labelsync.files import FileStat, Found, Unreadable, Unsettled, display, is_lines
from labelsync.intake import FileDone, Item, ReadConfig, Unsettle, Work
from labelsync.labelstudio import LabelStudio
from labelsync.plan import NewVersion, Quarantine, Skip, TooShort, UpdateFeedback, Wait, plan
from labelsync.project import Project
from labelsync.readers.base import Options
from labelsync.state import (
    ConversationRecord,
    FileRecord,
    Pending,
    State,
    Tailed,
    VersionRecord,
)
from labelsync.tail import index

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
    "quarantined",
    "skipped",
    "changing",
    "recovered",
    "retired",
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


@dataclass
class SyncReport:
    """What one sync did: counts for people, paths and conversations for the daemon."""

    tally: Counter[str] = field(default_factory=Counter)
    unsettled: list[Path] = field(default_factory=list)  # changed while read: look again
    sent: list[tuple[str, float]] = field(default_factory=list)  # (file, its last change): sent
    touched: dict[str, bool] = field(default_factory=dict)  # log conversations due: -> ended


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
    ) -> None:
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
        self._read = ReadConfig(
            config.root, config.options, config.max_file_bytes, config.max_wait_s
        )

    # -- start-up ------------------------------------------------------------------------
    def prepare(self) -> Counter[str]:
        tally: Counter[str] = Counter()
        self.state.bind(self.ls.url, self.project_id)
        if self.state.get_meta("rebuilt") is None:
            # A new (or lost) state learns what is already in the project before sending.
            tally["recovered"] += self.project.rebuild()
            self.state.set_meta("rebuilt", str(time.time()))
        return tally

    def _resolve_outbox(self) -> int:
        pending = [p for p in self.state.pending() if p.project_id == self.project_id]
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
        with self.state.transaction() as tx:
            tx.add_versions(
                VersionRecord(
                    p.project_id,
                    p.thread_id,
                    p.version,
                    p.sync_key,
                    found[p.sync_key],
                    p.source_file,
                )
                for p in pending
                if p.sync_key in found
            )
            tx.drop_outbox((p.project_id, p.sync_key) for p in pending)
        self.project.expect(len(found))
        log.info(
            "outbox resolved: %d imported before the interruption, %d to send again",
            len(found),
            len(pending) - len(found),
        )
        return len(found)

    def retry_rejected(self) -> list[str]:
        """What Label Studio rejected is tried again (the project's config may have changed):
        reopens such conversations of logs, returns the documents to read again."""
        rejected = self.state.with_status("rejected")
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
            report.tally["recovered"] += self._resolve_outbox()
        stream = intake.documents(
            documents, known, self._read, reread=lambda p: recheck or p in forced, now=self.now
        )
        self._pipeline(stream, report, dry_run, advance)
        return report

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
    ) -> SyncReport:
        """Conversations of logs that are due (default: every one with new lines)."""
        report = SyncReport()
        if not dry_run:
            report.tally["recovered"] += self._resolve_outbox()
        threads = self.state.tailed(open_only=True)
        if thread_ids is not None:
            wanted = set(thread_ids)
            threads = [t for t in threads if t.thread_id in wanted]
        if not threads:
            return report
        reader = State.open(self.state.path)  # the reader thread's own connection
        size = self.config.batch_size

        def batches() -> Iterator[tuple[list[Tailed], dict[str, list]]]:
            for start in range(0, len(threads), size):
                chunk = threads[start : start + size]
                yield chunk, reader.lines_of(t.thread_id for t in chunk)

        try:
            stream = intake.assembled(batches(), self._read, now=self.now)
            self._pipeline(stream, report, dry_run, progress or (lambda n: None))
        finally:
            reader.close()
        return report

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

                self._decide(chunk, report, dry_run, read_next)
                read_next()
                self.heartbeat()
                advance(sum(1 for item in chunk if not isinstance(item, Work)))

    def _decide(
        self,
        chunk: list[Item],
        report: SyncReport,
        dry_run: bool,
        while_importing: Callable[[], None],
    ) -> None:
        tally = report.tally
        works = [item for item in chunk if isinstance(item, Work)]
        done = [item for item in chunk if isinstance(item, FileDone)]
        for item in chunk:
            if isinstance(item, Unsettle):
                tally["changing"] += 1
                report.unsettled.append(item.path)
        for item in done:
            if item.record.status in ("quarantined", "unreadable"):
                tally["quarantined"] += 1
                log.warning("quarantined %s: %s", item.record.path, item.record.reason)
            elif item.record.status == "skipped":
                tally["skipped"] += 1
                log.info("skipped %s: %s", item.record.path, item.record.reason)
        tally["conversations"] += len(works)
        known = self.state.versions_of(
            self.project_id,
            (w.parsed.thread_id for w in works if isinstance(w.parsed, Conversation)),
        )
        records: list[ConversationRecord] = []
        outgoing: list[tuple[Work, int, list[tuple[int, str]]]] = []
        feedback: list[tuple[VersionRecord, Conversation]] = []
        before = {t: [(v.version, v.sync_key) for v in vs] for t, vs in known.items()}
        for work, decision in plan(
            ((w, w.parsed, w.settled) for w in works), known, self.config.min_turns
        ):
            if isinstance(decision, NewVersion):
                assert isinstance(work.parsed, Conversation)
                earlier = before.setdefault(work.parsed.thread_id, [])
                outgoing.append((work, decision.version, list(earlier)))
                earlier.append((decision.version, work.parsed.sync_key))
                continue
            if isinstance(decision, UpdateFeedback) and isinstance(work.parsed, Conversation):
                feedback.append((decision.version, work.parsed))
            if isinstance(decision, (Skip, UpdateFeedback)):
                tally["duplicates" if isinstance(decision, Skip) else "feedback"] += 1
                status, reason = (
                    "synced",
                    (
                        decision.reason
                        if isinstance(decision, Skip)
                        else f"same content as version {decision.version.version}"
                    ),
                )
            elif isinstance(decision, Wait):
                tally["waiting"] += 1
                status, reason = "waiting", decision.reason
            elif isinstance(decision, TooShort):
                tally["too_short"] += 1
                status, reason = "too_short", decision.reason
            else:
                assert isinstance(decision, Quarantine)
                tally["quarantined"] += 1
                status, reason = "quarantined", decision.reason
                log.warning(
                    "quarantined %s%s: %s",
                    work.path,
                    f" {work.position}" if work.position else "",
                    reason,
                )
            records.append(self._record(work, status, reason))

        if dry_run:
            for _, version, _ in outgoing:
                tally["new_tasks" if version == 1 else "new_versions"] += 1
            return
        if outgoing:
            # Another labelsync on this project? Learn what it sent before sending.
            learnt = self.project.learn()
            if learnt:
                tally["recovered"] += learnt
                outgoing = self._replan(outgoing, records, tally)
        self._deliver(outgoing, records, done, works, report, while_importing)
        if feedback:
            self.project.update_feedback(feedback)
        if any(version > 1 for _, version, _ in outgoing):
            tidied = self.project.tidy()
            tally["retired"] += tidied.retired

    def _record(self, work: Work, status: str, reason: str | None) -> ConversationRecord:
        parsed = work.parsed
        thread = parsed.thread_id if isinstance(parsed, Conversation) else None
        key = parsed.sync_key if isinstance(parsed, Conversation) else None
        return ConversationRecord(
            work.path, work.key, thread, status, reason, work.position, key, self.project_id
        )

    def _replan(
        self,
        outgoing: list[tuple[Work, int, list[tuple[int, str]]]],
        records: list[ConversationRecord],
        tally: Counter[str],
    ) -> list[tuple[Work, int, list[tuple[int, str]]]]:
        """Decide again what was to be sent, now that versions someone else sent are known."""
        works = [work for work, _, _ in outgoing]
        known = self.state.versions_of(
            self.project_id,
            (w.parsed.thread_id for w in works if isinstance(w.parsed, Conversation)),
        )
        before = {t: [(v.version, v.sync_key) for v in vs] for t, vs in known.items()}
        again: list[tuple[Work, int, list[tuple[int, str]]]] = []
        for work, decision in plan(
            ((w, w.parsed, w.settled) for w in works), known, self.config.min_turns
        ):
            assert isinstance(work.parsed, Conversation)
            if isinstance(decision, NewVersion):
                earlier = before.setdefault(work.parsed.thread_id, [])
                again.append((work, decision.version, list(earlier)))
                earlier.append((decision.version, work.parsed.sync_key))
            else:
                tally["duplicates"] += 1
                reason = getattr(decision, "reason", "sent by another labelsync")
                records.append(self._record(work, "synced", reason))
        return again

    def _deliver(
        self,
        outgoing: list[tuple[Work, int, list[tuple[int, str]]]],
        records: list[ConversationRecord],
        done: list[FileDone],
        works: list[Work],
        report: SyncReport,
        while_importing: Callable[[], None],
    ) -> None:
        tally = report.tally
        now = time.time()
        batch: list[tuple[Work, Pending, Outgoing]] = []
        for work, version, previous in outgoing:
            conversation, draft = work.parsed, work.draft
            assert isinstance(conversation, Conversation) and draft is not None
            pending = Pending(
                self.project_id,
                conversation.sync_key,
                conversation.thread_id,
                version,
                draft.data["source_file"],
                now,
            )
            task = draft.numbered(version, previous)
            batch.append((work, pending, Outgoing(conversation.sync_key, task)))
        with self.state.transaction() as tx:
            tx.put_conversations(records)
            tx.put_outbox(pending for _, pending, _ in batch)

        delivered = None
        if batch:
            started = time.monotonic()
            while_importing()
            delivered = self.delivery.send([out for _, _, out in batch])
            tally["recovered"] += delivered.found_existing
            self.project.expect(len(delivered.task_ids))
            log.debug(
                "imported %d tasks in %.2f s", len(delivered.task_ids), time.monotonic() - started
            )

        versions, sent = [], []
        for work, pending, _ in batch:
            assert delivered is not None and isinstance(work.parsed, Conversation)
            key = pending.sync_key
            if key in delivered.task_ids:
                task_id = delivered.task_ids[key]
                versions.append(
                    VersionRecord(
                        self.project_id,
                        pending.thread_id,
                        pending.version,
                        key,
                        task_id,
                        pending.source_file,
                        work.parsed.feedback_key,
                    )
                )
                sent.append(
                    self._record(work, "synced", f"version {pending.version}, task {task_id}")
                )
                tally["new_tasks" if pending.version == 1 else "new_versions"] += 1
                report.sent.append((work.path, work.changed_at))
                log.info(
                    "sent %s as version %d (task %d) from %s",
                    pending.thread_id,
                    pending.version,
                    task_id,
                    pending.source_file,
                )
            else:
                reason = delivered.rejected.get(key, "not imported")
                sent.append(self._record(work, "rejected", f"Label Studio rejected it: {reason}"))
                tally["quarantined"] += 1
                log.warning("rejected by Label Studio %s: %s", work.path, reason)
        with self.state.transaction() as tx:
            tx.add_versions(versions)
            tx.put_conversations(sent)
            tx.put_files(item.record for item in done)
            for item in done:
                if item.keys is not None:
                    tx.keep_only_conversations(item.record.path, item.keys)
            tx.close_tailed(w.key for w in works if w.tailed)
            tx.drop_outbox((pending.project_id, pending.sync_key) for _, pending, _ in batch)


def _chunked(stream: Iterator[Item], size: int) -> Iterator[list[Item]]:
    """Lists of items holding at most `size` conversations each."""
    while True:
        chunk: list[Item] = []
        works = 0
        for item in stream:
            chunk.append(item)
            if isinstance(item, Work):
                works += 1
                if works >= size:
                    break
        if not chunk:
            return
        yield chunk


def _oldest_first(found: Iterable[Found]) -> list[Found]:
    """Older writes first, so snapshots of one conversation become versions in order."""
    return sorted(found, key=lambda f: (f.stat.mtime_ns if f.stat else 0, display(f.path)))
