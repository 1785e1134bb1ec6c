"""`labelsync validate`: what labelsync reads out of a file, before anything is sent.

Reads a file the way the engine does (a document, a streamed array, or JSON
Lines, whose message lines are grouped into their conversations) and says
which reader understood it, how many conversations it holds, what could not
be read and where, and what was shown as a placeholder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labelsync.contract import Conversation, InvalidConversation, Message, id_from_file_name
from labelsync.files import is_lines, read_stable
from labelsync.readers import events
from labelsync.readers.base import Options
from labelsync.sources import Entry, entry_of, open_document, parse_json


@dataclass
class FileReport:
    path: Path
    shapes: Counter[str] = field(default_factory=Counter)
    conversations: list[Conversation] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (position, reason)
    count: int = 0
    kept: int = 10  # conversations kept for showing; the rest are only counted

    def add(self, position: str, parsed: Conversation | InvalidConversation) -> None:
        if isinstance(parsed, InvalidConversation):
            self.problems.append((position, parsed.reason))
            return
        self.count += 1
        self.shapes[parsed.shape] += 1
        if len(self.conversations) < self.kept:
            self.conversations.append(parsed)

    @property
    def warnings(self) -> list[str]:
        return [w for c in self.conversations for w in c.warnings]


def inspect(path: Path, options: Options, max_bytes: int) -> FileReport:
    """Raises OSError-like problems of the whole file (Unreadable, TooLarge, ...) to the caller."""
    report = FileReport(path)
    for entry in _entries(path, options, max_bytes):
        report.add(entry.position, entry.parsed)
    return report


def _entries(path: Path, options: Options, max_bytes: int) -> Iterator[Entry]:
    if not is_lines(path):
        yield from open_document(path, options, max_bytes).entries
        return
    # A log: whole-conversation lines as they are, message lines grouped.
    raw = read_stable(path, max(max_bytes, path.stat().st_size)).raw
    grouped: dict[str, list[Message]] = {}
    ended: dict[str, bool] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = parse_json(line)
        except InvalidConversation as invalid:
            yield Entry(f"line {number}", invalid)
            continue
        if isinstance(value, dict) and events.is_event(value, options):
            thread = events.conversation_of(value) or id_from_file_name(path.name)
            try:
                events.append(
                    grouped.setdefault(thread, []),
                    value,
                    events.event_messages(value, f"line {number}", options),
                )
            except InvalidConversation as invalid:
                yield Entry(f"line {number}", invalid)
                continue
            ended[thread] = events.is_end_marker(value) or value.get("ended") is True
            continue
        yield entry_of(f"line {number}", value, options, None, many=True)
    for thread, messages in grouped.items():
        if messages:
            yield Entry(
                f"conversation {thread}",
                Conversation(thread, tuple(messages), "events", ended=ended.get(thread, False)),
            )
