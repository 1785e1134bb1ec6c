"""A file as a stream of conversations, in memory that does not grow with the file.

- A JSON document holding one conversation (an object, or a list of its
  messages) is read whole, within LABELSYNC_MAX_FILE_BYTES.
- A JSON array of conversations (a provider export) is streamed element by
  element with ijson, whatever its size.
- A .json file that is really JSON Lines is read line by line.
- JSON Lines files (.jsonl, .ndjson) are read from where labelsync stopped
  (labelsync.tail): see `lines`.

Each conversation comes out as an `Entry` with its position in the file
(`[3]`, `line 17`), so one bad element is quarantined with where it is while
the rest of the file is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson

from labelsync import readers
from labelsync.contract import Conversation, InvalidConversation, Message, id_from_file_name
from labelsync.files import FileStat, TooLarge, Unreadable, Unsettled, open_regular, read_stable
from labelsync.readers import events
from labelsync.readers.base import MAX_DEPTH, Options

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Entry:
    position: str  # "" (the whole file), "[3]" (an array element), "line 17"
    parsed: Conversation | InvalidConversation


@dataclass
class Document:
    """One JSON file being read; `stat` and `sha256` are final once `entries` is exhausted."""

    path: Path
    stat: FileStat
    entries: Iterator[Entry]
    sha256: str = ""
    many: bool = False
    warnings: list[str] = field(default_factory=list)


def open_document(path: Path, options: Options, max_bytes: int) -> Document:
    """Start reading a JSON file. Raises Unsettled, Unreadable or TooLarge for the whole file."""
    try:
        read = read_stable(path, max_bytes)
    except TooLarge as too_large:
        return _streamed(path, too_large, options, max_bytes)
    doc = Document(path, read.stat, iter(()), read.sha256)
    doc.entries = _whole(read.raw, path.name, options, doc, max_bytes)
    return doc


def parse_json(raw: bytes | str) -> Any:
    """json.loads with the two failures of untrusted input turned into a reason."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        value = json.loads(text)
    except RecursionError:
        raise InvalidConversation(f"nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise InvalidConversation(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidConversation(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:  # e.g. an integer of 5,000 digits (Python's int limit)
        raise InvalidConversation(f"not usable JSON: {exc}") from None
    # Only a document with more brackets than the limit can nest deeper than it.
    brackets = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else MAX_DEPTH + 1
    if brackets > MAX_DEPTH and _too_deep(value):
        raise InvalidConversation(f"nests deeper than {MAX_DEPTH} levels")
    if "\\ud" in text or "\\uD" in text:  # maybe a lone surrogate, which nothing can store
        value = _clean_surrogates(value)
    return value


def read_one(doc: Any, options: Options, *, file_name: str | None, many: bool) -> Conversation:
    """readers.read, with any surprise in a reader turned into this entry's quarantine."""
    try:
        return readers.read(doc, options, file_name=file_name, many=many)
    except InvalidConversation:
        raise
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # A reader met a shape it did not expect: this entry's problem, not the run's.
        raise InvalidConversation(f"could not be read ({type(exc).__name__}: {exc})") from None


def _whole(
    raw: bytes, name: str, options: Options, doc: Document, max_bytes: int
) -> Iterator[Entry]:
    try:
        value = parse_json(raw)
    except InvalidConversation as invalid:
        if "Extra data" in invalid.reason:  # several JSON values: JSON Lines in a .json file
            doc.many = True
            yield from _json_lines(raw, options)
            return
        yield Entry("", invalid)
        return
    if isinstance(value, list) and value and _is_event_list(value, options):
        doc.many = True
        yield from _grouped_events(value, name, options)
        return
    if isinstance(value, list) and value and not readers.is_message_list(value, options):
        doc.many = True
        for index, element in enumerate(value):
            yield entry_of(f"[{index}]", element, options, None, many=True)
        return
    yield entry_of("", value, options, name, many=False)


def entry_of(position: str, value: Any, options: Options, name: str | None, *, many: bool) -> Entry:
    try:
        return Entry(position, read_one(value, options, file_name=name, many=many))
    except InvalidConversation as invalid:
        return Entry(position, invalid)


def _is_event_list(items: list[Any], options: Options) -> bool:
    """An array of message events of several conversations (a messages table exported)."""
    head = items[0]
    return (
        isinstance(head, dict)
        and events.is_event(head, options)
        and events.conversation_of(head) is not None
    )


def _grouped_events(items: list[Any], name: str, options: Options) -> Iterator[Entry]:
    """The events of an array grouped per conversation, in order; a bad element costs itself."""
    grouped: dict[str, list[Message]] = {}
    ended: dict[str, bool] = {}
    for index, item in enumerate(items):
        if not (isinstance(item, dict) and events.is_event(item, options)):
            yield Entry(f"[{index}]", InvalidConversation("not a message of a conversation"))
            continue
        thread = events.conversation_of(item) or id_from_file_name(name)
        try:
            new = events.event_messages(item, f"[{index}]", options)
        except InvalidConversation as invalid:
            yield Entry(f"[{index}]", invalid)
            continue
        events.append(grouped.setdefault(thread, []), item, new)
        ended[thread] = events.is_end_marker(item) or item.get("ended") is True
    for thread, messages in grouped.items():
        if messages:
            conversation = Conversation(
                thread, tuple(messages), "events", ended=ended.get(thread, False), final=True
            )
            yield Entry(f"conversation {thread}", conversation)


def _json_lines(raw: bytes, options: Options) -> Iterator[Entry]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        position = f"line {number}"
        try:
            value = parse_json(line)
        except InvalidConversation as invalid:
            yield Entry(position, invalid)
            continue
        yield entry_of(position, value, options, None, many=True)


def _streamed(path: Path, too_large: TooLarge, options: Options, max_bytes: int) -> Document:
    """A file over the whole-read limit: only a JSON array of conversations is accepted."""
    fd, stat = open_regular(path)
    handle = os.fdopen(fd, "rb")
    try:
        first = _first_byte(handle)
    except OSError as exc:
        handle.close()
        raise Unreadable(f"cannot be read: {exc.strerror}", stat) from None
    if first != b"[":
        handle.close()
        raise too_large
    handle.seek(0)
    doc = Document(path, stat, iter(()), many=True)
    doc.entries = _stream_array(handle, path, options, doc, max_bytes)
    return doc


def _stream_array(
    handle: IO[bytes], path: Path, options: Options, doc: Document, max_bytes: int
) -> Iterator[Entry]:
    hashing = _Hashing(handle)
    index = -1
    try:
        for index, element in enumerate(ijson.items(hashing, "item", use_float=True)):
            if (
                index == 0
                and isinstance(element, dict)
                and readers.is_message_list([element], options)
            ):
                yield Entry(
                    "",
                    InvalidConversation(
                        f"one conversation of {doc.stat.size} bytes is over the limit of "
                        f"{max_bytes} (LABELSYNC_MAX_FILE_BYTES)"
                    ),
                )
                return
            if index == 0 and _is_event_list([element], options):
                yield Entry(
                    "",
                    InvalidConversation(
                        f"an array of message events of {doc.stat.size} bytes is over the limit "
                        f"of {max_bytes} (LABELSYNC_MAX_FILE_BYTES): write them as JSON Lines "
                        "(.jsonl), which labelsync reads line by line"
                    ),
                )
                return
            yield entry_of(f"[{index}]", element, options, None, many=True)
        hashing.drain()
    except ijson.JSONError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield Entry(f"[{index + 1}]", InvalidConversation(f"not valid JSON: {first_line}"))
        return
    except OSError as exc:
        raise Unreadable(f"cannot be read: {exc.strerror}", doc.stat) from None
    finally:
        handle.close()
    after = FileStat.of(os.stat(path))
    if after != doc.stat:
        raise Unsettled("changed while being read")
    doc.sha256 = hashing.hexdigest()


def _clean_surrogates(value: Any) -> Any:
    """JSON may escape half a UTF-16 pair ("\\ud800"): UTF-8 has no such thing; make it U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_clean_surrogates(k): _clean_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_surrogates(v) for v in value]
    return value


def _first_byte(handle: IO[bytes]) -> bytes:
    while True:
        block = handle.read(4096)
        if not block:
            return b""
        stripped = block.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            return stripped[:1]


class _Hashing:
    """A file object that hashes what it hands out, so a streamed file gets its sha256 too."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        # ijson first reads 0 bytes to learn whether the file gives bytes or text.
        block = self._handle.read(size if size >= 0 else _CHUNK)
        self._sha.update(block)
        return block

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _too_deep(value: Any) -> bool:
    """Nesting depth over MAX_DEPTH, found iteratively: the input is untrusted."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False
