"""JSON Lines files, read from where labelsync stopped, the way file shippers do.

A file is known by the fingerprint of its first line (`head`), how far it was
read (`offset`, whole lines only) and a hash of the bytes just before that
offset (`check`). When a file is looked at again:

    same head, size >= offset, same check   -> read on from the offset (appended)
    anything else                           -> truncated, rotated or replaced:
                                               read from the start

A half-written last line waits for its newline; a last line without one is
taken only when the file is final (a backfill, or quiet) and it is a whole
JSON object. A line may be a whole conversation, or one message of a
conversation (labelsync.readers.events): `index()` says which, and which
conversation, so the engine can keep, per conversation, which lines make it
(`LineRef`s) and never re-read a file whole on each append.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelsync.contract import Conversation, InvalidConversation, Message, id_from_file_name
from labelsync.files import FileStat, Unreadable, Unsettled, open_regular
from labelsync.readers import events
from labelsync.readers.base import Options, text_or_none
from labelsync.sources import parse_json, read_one
from labelsync.state import FileRecord, LineRef, LogPosition

log = logging.getLogger(__name__)

_HEAD_BYTES = 4096  # a first line longer than this is fingerprinted by its first 4 KiB
_CHECK_BYTES = 256
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Line:
    """One line read: where it is, and what it is."""

    number: int
    offset: int
    length: int  # without the line break
    thread_id: str | None  # None for an unreadable line
    whole: bool  # a whole conversation (replaces what was known), else one message or end mark
    ended: bool
    problem: InvalidConversation | None = None

    @property
    def position(self) -> str:
        return f"line {self.number}"


@dataclass
class Cursor:
    """Where reading a log stands; becomes its position once its lines are kept."""

    path: Path
    key: str  # the file as the state knows it
    stat: FileStat
    head: str | None
    offset: int
    lines: int
    check: str | None
    stale: bool  # the same first line, but not the file read before: its old lines are stale

    def position(self) -> LogPosition | None:
        if self.head is None:
            return None
        return LogPosition(self.head, self.key, self.offset, self.lines, self.check)

    def record(self) -> FileRecord:
        return FileRecord(self.key, self.stat, "read", head=self.head)


def open_lines(
    path: Path, key: str, position_of: Callable[[str], LogPosition | None], *, final: bool
) -> tuple[Cursor, int]:
    """Open a JSON Lines file and find where to start reading: where this log (known by
    its first line, whatever its name now) was left. Returns (cursor, open fd)."""
    fd, stat = open_regular(path)
    try:
        head = _head(fd, stat.size, final)
        known = position_of(head) if head is not None else None
        cursor = Cursor(path, key, stat, head, 0, 0, None, known is not None)
        if (
            known is not None
            and known.offset <= stat.size
            and _check(fd, known.offset) == known.check
        ):
            cursor.offset, cursor.lines, cursor.check = known.offset, known.lines, known.check
            cursor.stale = False
        return cursor, fd
    except BaseException:
        os.close(fd)
        raise


def read_lines(
    cursor: Cursor, fd: int, options: Options, max_line_bytes: int, *, final: bool
) -> Iterator[Line]:
    """Index the new lines; the cursor moves past each line as it is yielded. Closes fd."""
    try:
        if cursor.head is None:
            return
        position = cursor.offset  # file offset of buffer[0]
        buffer = b""
        skipping = False  # inside a line over the size limit: drop bytes up to its end
        while block := os.pread(fd, _BLOCK, position + len(buffer)):
            buffer += block
            start = 0
            while (newline := buffer.find(b"\n", start)) >= 0:
                raw, line_offset = buffer[start:newline], position + start
                start = newline + 1
                cursor.offset = position + start
                if start >= _CHECK_BYTES or position == 0:
                    cursor.check = _hash(buffer[max(0, start - _CHECK_BYTES) : start])
                else:
                    cursor.check = _check(fd, cursor.offset)
                if skipping:  # the rest of a line already quarantined as too long
                    skipping = False
                    continue
                if not raw.strip():
                    cursor.lines += 1
                    continue
                line = _classify(raw, cursor, line_offset, options, max_line_bytes, strict=False)
                if line is not None:
                    yield line
            position += start
            buffer = buffer[start:]
            if len(buffer) > max_line_bytes:
                # A line this long is quarantined; keep none of it in memory.
                if not skipping:
                    cursor.lines += 1
                    yield Line(
                        cursor.lines,
                        position,
                        len(buffer),
                        None,
                        False,
                        False,
                        InvalidConversation(_too_long(max_line_bytes)),
                    )
                skipping = True
                position += len(buffer)
                buffer = b""
        if buffer and final and not skipping:
            line = _classify(buffer, cursor, position, options, max_line_bytes)
            if line is not None:
                cursor.offset = position + len(buffer)
                cursor.check = _check(fd, cursor.offset)
                yield line
    except OSError as exc:
        raise Unreadable(f"cannot be read: {exc.strerror}", cursor.stat) from None
    finally:
        os.close(fd)


def _classify(
    raw: bytes,
    cursor: Cursor,
    offset: int,
    options: Options,
    max_line_bytes: int,
    *,
    strict: bool = True,
) -> Line | None:
    """What a line is. strict: an unterminated last line counts only if it is a whole object."""
    if len(raw) > max_line_bytes:
        cursor.lines += 1
        return Line(
            cursor.lines,
            offset,
            len(raw),
            None,
            False,
            False,
            InvalidConversation(_too_long(max_line_bytes)),
        )
    try:
        value = parse_json(raw)
    except InvalidConversation as invalid:
        if strict:
            return None  # maybe still being written
        cursor.lines += 1
        return Line(cursor.lines, offset, len(raw), None, False, False, invalid)
    if strict and not isinstance(value, dict):
        return None
    cursor.lines += 1
    number = cursor.lines
    try:
        thread, whole, ended = _identify(value, cursor.path, options)
    except InvalidConversation as invalid:
        return Line(number, offset, len(raw), None, False, False, invalid)
    except Exception as exc:  # a reader met what it did not expect: this line's problem only
        log.debug("line %d of %s could not be read", number, cursor.key, exc_info=True)
        reason = f"could not be read ({type(exc).__name__}: {exc})"
        return Line(number, offset, len(raw), None, False, False, InvalidConversation(reason))
    return Line(number, offset, len(raw), thread, whole, ended)


def _identify(value: Any, path: Path, options: Options) -> tuple[str, bool, bool]:
    """(conversation id, whole conversation?, ended?) of one parsed line."""
    if isinstance(value, dict) and events.is_event(value, options):
        events.event_messages(value, "line", options)  # raises if the message is malformed
        thread = events.conversation_of(value) or id_from_file_name(path.name)
        return thread, False, events.is_end_marker(value) or value.get("ended") is True
    conversation = read_one(value, options, file_name=None, many=True)
    return conversation.thread_id, True, conversation.ended


def assemble(
    thread_id: str, refs: list[LineRef], options: Options, max_line_bytes: int
) -> tuple[Conversation, list[str]]:
    """A conversation again from its lines, read where they are. Returns it and what was missing.

    Raises InvalidConversation when none of its lines can be read any more.
    """
    missing: list[str] = []
    files: dict[tuple[str, str], Path | None] = {}
    whole: Conversation | None = None
    messages: list[Message] = []
    ended = False
    last: dict[str, Any] = {}
    for ref in refs:
        key = (ref.path, ref.head)
        if key not in files:
            files[key] = locate(Path(ref.path), ref.head)
        where = files[key]
        if where is None:
            missing.append(f"{ref.path} line {ref.line_no}")
            continue
        try:
            raw = _pread(where, ref.offset, ref.length)
            value = parse_json(raw)
        except (OSError, InvalidConversation):
            missing.append(f"{ref.path} line {ref.line_no}")
            continue
        try:
            if isinstance(value, dict) and events.is_event(value, options):
                lines = events.event_messages(value, f"line {ref.line_no}", options)
                events.append(messages, value, lines)
                # A message after an end mark reopens the conversation; an end mark ends it.
                ended = events.is_end_marker(value) or value.get("ended") is True
                last = value
            else:  # a whole conversation: what it holds replaces what came before
                whole = read_one(value, options, file_name=None, many=True)
                messages, ended = list(whole.messages), whole.ended
        except InvalidConversation:
            missing.append(f"{ref.path} line {ref.line_no}")
    if not messages:
        raise InvalidConversation(
            "its lines can no longer be read" if missing else "no messages: nothing to evaluate"
        )
    if whole is not None and messages == list(whole.messages):
        return whole, missing
    return (
        Conversation(
            thread_id=thread_id,
            messages=tuple(messages),
            shape=whole.shape if whole is not None else "events",
            model=_last_model(messages) or (whole.model if whole else None),
            timestamp=text_or_none(last.get("timestamp")) or (whole.timestamp if whole else None),
            ended=ended,
            title=whole.title if whole else None,
            extra=dict(whole.extra) if whole else {},
        ),
        missing,
    )


def locate(path: Path, head: str) -> Path | None:
    """The file whose first line has this fingerprint: where it was, or rotated beside it."""
    if _head_of(path) == head:
        return path
    stem = path.name.split(".", 1)[0]
    try:
        siblings = sorted(os.scandir(path.parent), key=lambda e: e.name)
    except OSError:
        return None
    for entry in siblings:
        if (
            entry.name != path.name
            and entry.name.startswith(stem)
            and _head_of(Path(entry.path)) == head
        ):
            return Path(entry.path)
    return None


def _head_of(path: Path) -> str | None:
    try:
        fd, stat = open_regular(path)
    except (Unreadable, Unsettled):
        return None
    try:
        return _head(fd, stat.size, final=True)
    except OSError:
        return None
    finally:
        os.close(fd)


def _head(fd: int, size: int, final: bool) -> str | None:
    """Fingerprint of the first line (its first 4 KiB); None while it is still being written."""
    first = os.pread(fd, _HEAD_BYTES, 0)
    newline = first.find(b"\n")
    if newline >= 0:
        first = first[:newline]
    elif len(first) < _HEAD_BYTES and not (final and first.strip()):
        return None  # the first line is not whole yet
    return hashlib.sha256(first).hexdigest()[:32]


def _check(fd: int, offset: int) -> str:
    start = max(0, offset - _CHECK_BYTES)
    return _hash(os.pread(fd, offset - start, start))


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd, _ = open_regular(path)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _last_model(messages: list[Message]) -> str | None:
    return next((m.model for m in reversed(messages) if m.model), None)


def _too_long(limit: int) -> str:
    return f"a line over the limit of {limit} bytes (LABELSYNC_MAX_FILE_BYTES)"


@dataclass
class Indexed:
    """A batch of new lines of one log, ready to be kept in one transaction."""

    record: FileRecord | None  # the watched file's record once these lines are kept
    position: LogPosition | None  # how far the log is read once these lines are kept
    stale_head: str | None  # drop what was known of this log's lines first
    refs: list[tuple[LineRef, bool]]  # (line, replaces what was known of its conversation)
    touched: dict[str, bool]  # conversation -> its latest line ends it
    bad: list[Line]  # lines that are not a conversation nor a message


def index(
    path: Path,
    key: str,
    previous_head: str | None,
    position_of: Callable[[str], LogPosition | None],
    options: Options,
    max_line_bytes: int,
    *,
    final: bool,
    batch_lines: int = 10_000,
) -> Iterator[Indexed]:
    """Read a log's new lines and say, batch by batch, which conversation each belongs to.

    previous_head: the first line's fingerprint of the log this path held before. When
    the path now holds another log (rotated: app.jsonl renamed, a new one started), the
    old one is finished first where it went (beside it), so no line written just before
    the rotation is lost.
    """
    cursor, fd = open_lines(path, key, position_of, final=final)
    if previous_head is not None and cursor.head is not None and cursor.head != previous_head:
        rotated = locate(path, previous_head)
        if rotated is not None and rotated != path:
            try:
                old, old_fd = open_lines(rotated, key, position_of, final=True)
            except (Unreadable, Unsettled):
                old = None
            if old is not None:
                yield from _batches(old, old_fd, None, options, max_line_bytes, True, batch_lines)
    yield from _batches(cursor, fd, cursor.record(), options, max_line_bytes, final, batch_lines)


def _batches(
    cursor: Cursor,
    fd: int,
    record: FileRecord | None,
    options: Options,
    max_line_bytes: int,
    final: bool,
    batch_lines: int,
) -> Iterator[Indexed]:
    stale = cursor.head if cursor.stale else None
    batch = Indexed(record, cursor.position(), stale, [], {}, [])
    count = 0
    for line in read_lines(cursor, fd, options, max_line_bytes, final=final):
        if line.problem is not None or line.thread_id is None:
            batch.bad.append(line)
        else:
            assert cursor.head is not None
            ref = LineRef(
                line.thread_id, cursor.key, cursor.head, line.offset, line.length, line.number
            )
            batch.refs.append((ref, line.whole))
            batch.touched[line.thread_id] = line.ended
        count += 1
        if count >= batch_lines:
            batch.position = cursor.position()
            yield batch
            batch, count = Indexed(record, cursor.position(), None, [], {}, []), 0
    batch.position = cursor.position()
    yield batch
