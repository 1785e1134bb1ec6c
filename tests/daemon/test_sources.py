"""A file as a stream of conversations: documents, streamed arrays, JSON Lines in a .json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelsync.contract import Conversation, InvalidConversation
from labelsync.files import TooLarge
from labelsync.readers.base import Options
from labelsync.sources import open_document

OPTIONS = Options()


def conv(thread: str | None, *questions: str) -> dict:
    messages = []
    for q in questions:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": q.upper()}]
    return {"id": thread, "messages": messages} if thread else {"messages": messages}


def entries(path: Path, max_bytes: int = 1 << 20) -> list[tuple[str, object]]:
    doc = open_document(path, OPTIONS, max_bytes)
    out = []
    for entry in doc.entries:
        parsed = entry.parsed
        what = parsed.thread_id if isinstance(parsed, Conversation) else parsed.reason
        out.append((entry.position, what))
    return out


@pytest.mark.parametrize("max_bytes", [1 << 20, 1024], ids=["read whole", "streamed"])
def test_an_array_of_conversations_is_one_entry_each_and_a_bad_one_costs_itself(
    tmp_path: Path, max_bytes: int
):
    path = tmp_path / "export.json"
    items = [conv("a", "q1", "q2"), {"nothing": "here"}, conv("c", "q" * 400, "x"), 7]
    path.write_text(json.dumps(items))
    found = entries(path, max_bytes)
    assert [position for position, _ in found] == ["[0]", "[1]", "[2]", "[3]"]
    assert found[0][1] == "a" and found[2][1] == "c"
    assert "no message list" in str(found[1][1])
    assert "a JSON number" in str(found[3][1])


def test_a_streamed_array_gets_the_same_content_hash_as_a_whole_read(tmp_path: Path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([conv("a", "q" * 300, "r"), conv("b", "s" * 300, "t")]))
    whole = open_document(path, OPTIONS, 1 << 20)
    list(whole.entries)
    streamed = open_document(path, OPTIONS, 512)
    list(streamed.entries)
    assert whole.many and streamed.many
    assert streamed.sha256 == whole.sha256 != ""


def test_a_bare_list_of_messages_is_one_conversation(tmp_path: Path):
    path = tmp_path / "conversation_m1.json"
    path.write_text(json.dumps(conv(None, "q1", "q2")["messages"]))
    assert entries(path) == [("", "m1")]


def test_a_large_object_is_too_large_but_a_large_array_is_streamed(tmp_path: Path):
    big_object = tmp_path / "one.json"
    big_object.write_text(json.dumps(conv("a", "x" * 5000, "y")))
    with pytest.raises(TooLarge, match="LABELSYNC_MAX_FILE_BYTES"):
        open_document(big_object, OPTIONS, 1024)
    big_list = tmp_path / "messages.json"
    big_list.write_text(json.dumps(conv("a", "x" * 5000, "y")["messages"]))
    (only,) = entries(big_list, 1024)
    assert "over the limit" in str(only[1])


def test_json_lines_in_a_json_file_are_read_line_by_line(tmp_path: Path):
    path = tmp_path / "dump.json"
    path.write_text(
        json.dumps(conv("a", "q1", "q2")) + "\n{broken\n" + json.dumps(conv("b", "q1", "q2")) + "\n"
    )
    found = entries(path)
    assert [p for p, _ in found] == ["line 1", "line 2", "line 3"]
    assert found[0][1] == "a" and found[2][1] == "b" and "not valid JSON" in str(found[1][1])


def test_conversations_without_ids_keep_theirs_when_the_file_is_reordered(tmp_path: Path):
    items = [conv(None, "hello", "how are you"), conv(None, "what time is it", "thanks")]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(items))
    second.write_text(json.dumps(items[::-1]))
    ids_first = {thread for _, thread in entries(first)}
    ids_second = {thread for _, thread in entries(second)}
    assert ids_first == ids_second and len(ids_first) == 2
    assert all(str(t).startswith("sha-") for t in ids_first)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": ' + b"9" * 5000 + b"}", "usable"),
        (b'{"messages": ' + b"[" * 200 + b"]" * 200 + b"}", "nests deeper than 64 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    ],
)
def test_unreadable_documents_are_one_line_reasons(tmp_path: Path, raw: bytes, reason: str):
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    (only,) = entries(path, 1 << 21)
    assert reason in str(only[1]) and "\n" not in str(only[1])


def test_a_lone_surrogate_in_json_becomes_a_replacement_character(tmp_path: Path):
    path = tmp_path / "s.json"
    path.write_bytes(b'{"id": "t\\ud800", "messages": [{"role": "user", "content": "a\\udfffb"}]}')
    doc = open_document(path, OPTIONS, 1 << 20)
    (entry,) = list(doc.entries)
    assert not isinstance(entry.parsed, InvalidConversation)
    assert entry.parsed.thread_id == "t\ufffd"
    assert entry.parsed.messages[0].content == "a\ufffdb"


def test_an_array_of_message_events_is_grouped_per_conversation(tmp_path: Path):
    path = tmp_path / "messages-table.json"
    rows = [
        {"conversation_id": "a", "role": "user", "content": "hi"},
        {"conversation_id": "b", "role": "user", "content": "yo"},
        {"conversation_id": "a", "role": "assistant", "content": "hello"},
        "not an event",
    ]
    path.write_text(json.dumps(rows))
    doc = open_document(path, OPTIONS, 1 << 20)
    found = {e.position: e.parsed for e in doc.entries}
    a = found["conversation a"]
    assert isinstance(a, Conversation) and [m.content for m in a.messages] == ["hi", "hello"]
    assert isinstance(found["[3]"], InvalidConversation)
    # Too big to group in memory: it says to write JSON Lines instead.
    (only,) = entries(path, 64)
    assert "JSON Lines" in str(only[1])
