"""JSON Lines read from where labelsync stopped: appends, half lines, truncation, rotation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from labelsync.readers.base import Options
from labelsync.state import FileRecord, LineRef
from labelsync.tail import Indexed, assemble, index

OPTIONS = Options()


def event(conversation: str, role: str, content: str, **extra: object) -> str:
    return json.dumps({"conversation_id": conversation, "role": role, "content": content, **extra})


def whole(thread: str, *questions: str) -> str:
    messages = []
    for q in questions:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": q.upper()}]
    return json.dumps({"id": thread, "messages": messages})


def read(
    path: Path, known: FileRecord | None, final: bool = False
) -> tuple[list[Indexed], FileRecord]:
    batches = list(index(path, str(path), known, OPTIONS, 1 << 20, final=final))
    return batches, batches[-1].record


def refs(batches: list[Indexed]) -> list[LineRef]:
    return [ref for batch in batches for ref, _ in batch.refs]


def test_appended_lines_are_read_once_and_grouped_by_conversation(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    log.write_text(event("a", "user", "hi") + "\n" + event("b", "user", "yo") + "\n")
    first, record = read(log, None)
    assert [(r.thread_id, r.line_no) for r in refs(first)] == [("a", 1), ("b", 2)]
    assert record.offset == log.stat().st_size and record.lines == 2

    with log.open("a") as f:
        f.write(event("a", "assistant", "hello") + "\n")
    second, record = read(log, record)
    assert [(r.thread_id, r.line_no) for r in refs(second)] == [("a", 3)]
    assert not second[0].restarted

    again, _ = read(log, record)  # nothing new: nothing read
    assert refs(again) == []


def test_a_half_written_last_line_waits_for_its_newline(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    line = event("a", "user", "hi")
    log.write_text(line + "\n" + line[:10])
    batches, record = read(log, None)
    assert len(refs(batches)) == 1 and record.offset == len(line) + 1
    with log.open("a") as f:
        f.write(line[10:] + "\n")
    batches, record = read(log, record)
    assert [r.line_no for r in refs(batches)] == [2]


def test_a_final_file_takes_a_last_line_without_newline_only_if_it_is_whole(tmp_path: Path):
    log = tmp_path / "dataset.jsonl"
    log.write_text(whole("t1", "q") + "\n" + whole("t2", "q"))
    batches, record = read(log, None, final=True)
    assert [r.thread_id for r in refs(batches)] == ["t1", "t2"]
    # Later the writer adds the newline and more: nothing is read twice.
    with log.open("a") as f:
        f.write("\n" + whole("t3", "q") + "\n")
    batches, _ = read(log, record, final=True)
    assert [r.thread_id for r in refs(batches)] == ["t3"]


def test_truncation_rotation_and_replacement_restart_from_the_start(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    log.write_text(event("a", "user", "one") + "\n" + event("a", "user", "two") + "\n")
    _, record = read(log, None)

    log.write_text(event("a", "user", "one") + "\n")  # truncated (copytruncate)
    batches, record = read(log, record)
    assert batches[0].restarted and [r.line_no for r in refs(batches)] == [1]

    os.rename(log, tmp_path / "chat.jsonl.1")  # rotated; a new file takes the name
    log.write_text(event("c", "user", "new file") + "\n")
    batches, record = read(log, record)
    assert batches[0].restarted and [r.thread_id for r in refs(batches)] == ["c"]

    # Rewritten in place with the same first line but other lines after it.
    log.write_text(event("c", "user", "new file") + "\n" + event("d", "user", "x") * 1 + "\n")
    _, record = read(log, record)
    log.write_text(event("c", "user", "new file") + "\n" + event("e", "user", "y") + "\n")
    batches, _ = read(log, record)
    assert batches[0].restarted


def test_whole_conversation_lines_and_message_lines_are_told_apart(tmp_path: Path):
    log = tmp_path / "mixed.jsonl"
    log.write_text(
        "\n".join(
            [
                whole("t1", "q1", "q2"),
                event("t2", "user", "hi"),
                json.dumps({"conversation_id": "t2", "ended": True}),
                "not json",
                json.dumps({"conversation_id": "t2", "role": "user"}),  # a message without text
                "",
            ]
        )
    )
    batches, _ = read(log, None)
    kinds = [(ref.thread_id, whole_) for ref, whole_ in batches[0].refs]
    assert kinds == [("t1", True), ("t2", False), ("t2", False)]
    assert batches[0].touched == {"t1": False, "t2": True}
    bad = {line.number: line.problem.reason for line in batches[0].bad if line.problem}
    assert "not valid JSON" in bad[4] and 5 in bad


def test_a_line_over_the_limit_is_quarantined_without_being_held_in_memory(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    log.write_text(event("a", "user", "x" * 5000) + "\n" + event("b", "user", "ok") + "\n")
    batches = list(index(log, str(log), None, OPTIONS, 1024, final=False))
    assert [line.number for b in batches for line in b.bad] == [1]
    assert [r.thread_id for r in refs(batches)] == ["b"]


def test_a_conversation_is_assembled_from_its_lines_even_after_rotation(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    log.write_text(event("a", "user", "question") + "\n" + event("z", "user", "other") + "\n")
    first, record = read(log, None)
    os.rename(log, tmp_path / "chat.jsonl.1")
    log.write_text(event("a", "assistant", "answer\nwith two lines", model="m1") + "\n")
    second, _ = read(log, record)
    lines = [r for r in refs(first) + refs(second) if r.thread_id == "a"]
    conversation, missing = assemble("a", lines, OPTIONS, 1 << 20)
    assert missing == []
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", "question"),
        ("assistant", "answer\nwith two lines"),
    ]
    assert conversation.model == "m1" and conversation.shape == "events"

    os.remove(tmp_path / "chat.jsonl.1")  # the rotated file is gone: what is left, and said so
    conversation, missing = assemble("a", lines, OPTIONS, 1 << 20)
    assert [m.role for m in conversation.messages] == ["assistant"]
    assert missing == [f"{log} line 1"]


def test_a_chainlit_step_written_again_replaces_its_first_write(tmp_path: Path):
    def step(step_id: str, kind: str, output: str) -> str:
        return json.dumps(
            {"id": step_id, "threadId": "th", "type": kind, "output": output, "name": "x"}
        )

    log = tmp_path / "steps.jsonl"
    log.write_text(
        "\n".join(
            [
                step("s1", "user_message", "What is 2+2?"),
                step("s2", "assistant_message", "It is"),  # streamed, unfinished
                step("s2", "assistant_message", "It is 4."),  # the same step, finished
                "",
            ]
        )
    )
    batches, _ = read(log, None)
    conversation, _ = assemble("th", refs(batches), OPTIONS, 1 << 20)
    assert [m.content for m in conversation.messages] == ["What is 2+2?", "It is 4."]
