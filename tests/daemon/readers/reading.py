"""Read a fixture file exactly the way the engine does, and what a human expects of it.

A `.json` file is opened with `sources.open_document` (one conversation, or an
array of conversations read element by element); a `.jsonl` file goes through
`inspect.inspect`, which reads it as the tailer does (whole-conversation lines
as they are, message lines grouped per conversation in order). Next to each
fixture, `<name>.expected.json` lists the conversations a human expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelsync.contract import Conversation, InvalidConversation, id_from_content, id_from_file_name
from labelsync.files import is_lines
from labelsync.inspect import inspect
from labelsync.readers.base import Options
from labelsync.sources import open_document

FIXTURES = Path(__file__).parent / "fixtures"
MAX_BYTES = 10 * 1024 * 1024


def fixture_names() -> list[str]:
    return sorted(
        p.name
        for p in FIXTURES.iterdir()
        if p.suffix in (".json", ".jsonl") and not p.name.endswith(".expected.json")
    )


@dataclass
class FileRead:
    conversations: list[Conversation]
    problems: list[tuple[str, str]]  # (position, reason)
    many: bool  # the file holds many conversations (no file-name identity)


def read_fixture(name: str, path: Path | None = None, options: Options | None = None) -> FileRead:
    path = path or FIXTURES / name
    options = options or Options()
    if is_lines(path):
        report = inspect(path, options, MAX_BYTES)
        assert report.count == len(report.conversations), "raise FileReport.kept for this file"
        return FileRead(report.conversations, report.problems, many=True)
    document = open_document(path, options, MAX_BYTES)
    conversations: list[Conversation] = []
    problems: list[tuple[str, str]] = []
    for entry in document.entries:
        if isinstance(entry.parsed, InvalidConversation):
            problems.append((entry.position, entry.parsed.reason))
        else:
            conversations.append(entry.parsed)
    return FileRead(conversations, problems, many=document.many)


def expected(name: str) -> list[dict[str, Any]]:
    stem = name.rsplit(".", 1)[0]
    return json.loads((FIXTURES / f"{stem}.expected.json").read_text(encoding="utf-8"))


def dialogue(conversation: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content.strip()} for m in conversation.messages]


def expected_id(name: str, case: dict[str, Any], read: FileRead, got: Conversation) -> str:
    """The conversation's own id; without one, the file's name or a key from its content."""
    if case["id"] is not None:
        return str(case["id"])
    if not read.many:
        return id_from_file_name(name)
    return id_from_content(got.messages)
