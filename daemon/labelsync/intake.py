"""What changed on disk, as conversations to decide: the engine's reading stage.

Runs on the engine's reader thread and touches files only, never the state
(what the state knows is handed in). Two streams:

- `documents`: JSON files that changed since they were last read, each as its
  conversations (`Work`) followed by a `FileDone` carrying the file's new
  record; a file that cannot be read becomes a `FileDone` with its reason.
- `assembled`: conversations of tailed logs, rebuilt from their lines.

Any surprise while reading one file is that file's problem: it is recorded
with a one-line reason and the stream goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labelsync import privacy
from labelsync.contract import Conversation, InvalidConversation
from labelsync.files import FileStat, Found, TooLarge, Unreadable, Unsettled, display
from labelsync.plan import ENDED, FINAL, QUIET
from labelsync.readers.base import Options
from labelsync.redact import Redactor
from labelsync.sources import open_document
from labelsync.state import FileRecord, LineRef, Tailed
from labelsync.tail import assemble
from labelsync.task import TaskDraft, draft_task

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One conversation to decide, and where it came from."""

    path: str  # the file (state key)
    key: str  # which conversation of the file (its id; its position if unreadable)
    position: str
    parsed: Conversation | InvalidConversation
    draft: TaskDraft | None = None
    settled: str | None = None  # why it cannot grow any more (plan.FINAL, ...), if so
    tailed: bool = False  # assembled from log lines
    changed_at: float = 0.0  # wall time of its last change (file mtime, or its last line)
    redacted: dict[str, int] = field(default_factory=dict)  # detector -> values replaced
    shown: Conversation | None = None  # as it may leave the machine (redacted)

    @property
    def weight(self) -> int:
        """About the memory this conversation holds until it is sent: its text read, and
        twice more in its task (the text, and the HTML the template shows)."""
        parsed = self.parsed
        if not isinstance(parsed, Conversation):
            return 0
        return 3 * sum(len(m.content) for m in parsed.messages)
    missing: list[str] = field(default_factory=list)  # its lines that could not be read


@dataclass
class FileDone:
    """A file fully read: its new record; `keys`: the conversations it holds now."""

    record: FileRecord
    keys: list[str] | None = None
    nbytes: int = 0


@dataclass
class Unsettle:
    """A file changed while it was read: look again later, it is not bad."""

    path: Path


Item = Work | FileDone | Unsettle


@dataclass(frozen=True)
class ReadConfig:
    root: Path
    options: Options
    max_file_bytes: int
    max_wait_s: float  # quiet this long: a short conversation will not grow
    redactor: Redactor = field(default_factory=Redactor)  # off unless LABELSYNC_REDACT

    def draft(self, conversation: Conversation, source_file: str) -> Drafted:
        """The conversation under a safe id, as it may be shown, and its task."""
        conversation = privacy.identity(conversation, self.redactor)
        shown, file_name, counts = privacy.shown(conversation, source_file, self.redactor)
        redaction = self.redactor.config_id if self.redactor.enabled else None
        task = draft_task(conversation, file_name, shown, redaction)
        return Drafted(conversation, shown, task, counts)


@dataclass(frozen=True)
class Drafted:
    conversation: Conversation  # under an id with no personal data in it
    shown: Conversation  # its texts as they may leave the machine (redacted)
    task: TaskDraft
    redacted: dict[str, int]  # detector -> values replaced


def documents(
    found: Iterable[Found],
    known: dict[str, FileRecord],
    config: ReadConfig,
    *,
    reread: Callable[[str], bool],
    now: Callable[[], float],
) -> Iterator[Item]:
    """The conversations of files that changed (the caller has left out unchanged ones).

    reread(path): decide this file again even if its bytes are the ones last read.
    """
    for entry in found:
        key = display(entry.path)
        record = known.get(key)
        if entry.stat is None:  # skipped without opening (a FIFO, a symlink out, ...)
            if record is None or record.status != "skipped" or record.reason != entry.problem:
                yield FileDone(FileRecord(key, FileStat(0, 0, 0), "skipped", entry.problem))
            continue
        try:
            yield from _document(entry.path, key, entry.stat, record, config, reread(key), now)
        except Exception as exc:
            log.debug("reading %s failed", key, exc_info=True)
            reason = f"could not be read ({type(exc).__name__}: {exc})"
            yield FileDone(FileRecord(key, entry.stat, "quarantined", reason), keys=[])


def _document(
    path: Path,
    key: str,
    stat: FileStat,
    record: FileRecord | None,
    config: ReadConfig,
    recheck: bool,
    now: Callable[[], float],
) -> Iterator[Item]:
    try:
        doc = open_document(path, config.options, config.max_file_bytes)
    except Unsettled:
        yield Unsettle(path)
        return
    except TooLarge as exc:
        yield FileDone(FileRecord(key, exc.stat, "quarantined", str(exc)), keys=[])
        return
    except Unreadable as exc:
        status = "unreadable" if exc.retry else "skipped"
        yield FileDone(FileRecord(key, exc.stat or stat, status, exc.reason))
        return
    if not recheck and record is not None and doc.sha256 and record.sha256 == doc.sha256:
        # Touched, not changed (same bytes): keep the decisions, learn the new stat.
        yield FileDone(FileRecord(key, doc.stat, record.status, record.reason, doc.sha256))
        return
    quiet = now() - doc.stat.mtime_ns / 1e9 >= config.max_wait_s
    relative = _relative(path, config.root)
    keys: list[str] = []
    try:
        for entry in doc.entries:
            parsed = entry.parsed
            if isinstance(parsed, InvalidConversation):
                keys.append(entry.position or "")
                yield Work(key, entry.position or "", entry.position, parsed)
                continue
            drafted = config.draft(parsed, relative)
            parsed = drafted.conversation
            keys.append(parsed.thread_id)
            yield Work(
                key,
                parsed.thread_id,
                entry.position,
                parsed,
                drafted.task,
                _settled(parsed, quiet),
                changed_at=doc.stat.mtime_ns / 1e9,
                redacted=drafted.redacted,
                shown=drafted.shown,
            )
    except Unsettled:
        yield Unsettle(path)
        return
    yield FileDone(
        FileRecord(key, doc.stat, "read", None, doc.sha256), keys=keys, nbytes=doc.stat.size
    )


def assembled(
    batches: Iterable[tuple[list[Tailed], dict[str, list[LineRef]]]],
    config: ReadConfig,
    *,
    now: Callable[[], float],
) -> Iterator[Item]:
    """Conversations of tailed logs, rebuilt from their lines, batch by batch."""
    for threads, lines in batches:
        for tailed in threads:
            refs = lines.get(tailed.thread_id, [])
            try:
                conversation, missing = assemble(
                    tailed.thread_id, refs, config.options, config.max_file_bytes
                )
            except InvalidConversation as invalid:
                yield Work(tailed.path, tailed.thread_id, "", invalid, tailed=True)
                continue
            except Exception as exc:
                reason = f"could not be read ({type(exc).__name__}: {exc})"
                yield Work(
                    tailed.path, tailed.thread_id, "", InvalidConversation(reason), tailed=True
                )
                continue
            if tailed.ended and not conversation.ended:
                conversation = _with_ended(conversation)
            quiet = now() - tailed.last_at >= config.max_wait_s
            relative = _relative(Path(tailed.path), config.root)
            drafted = config.draft(conversation, relative)
            yield Work(
                tailed.path,
                tailed.thread_id,
                "",
                drafted.conversation,
                drafted.task,
                _settled(drafted.conversation, quiet),
                tailed=True,
                changed_at=tailed.last_at,
                missing=missing,
                redacted=drafted.redacted,
                shown=drafted.shown,
            )


def _settled(conversation: Conversation, quiet: bool) -> str | None:
    if conversation.final:
        return FINAL
    if conversation.ended:
        return ENDED
    return QUIET if quiet else None


def _with_ended(conversation: Conversation) -> Conversation:
    from dataclasses import replace

    return replace(conversation, ended=True)


def _relative(path: Path, root: Path) -> str:
    """The path as the task names it: relative to the watch directory (a string prefix test,
    since os.path.relpath cost a backfill ~30 µs a file)."""
    text, base = display(path), display(root).rstrip(os.sep) + os.sep
    return text[len(base) :] if text.startswith(base) else text
