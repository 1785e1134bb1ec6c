"""JSON Lines read from where labelsync stopped: appends, half lines, truncation, rotation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from labelsync.readers.base import Options
from labelsync.state import LineRef, LogPosition
from labelsync.tail import Indexed, assemble, index

OPTIONS = Options()


def event(conversation: str, role: str, content: str, **extra: object) -> str:
    return json.dumps({"conversation_id": conversation, "role": role, "content": content, **extra})


def whole(thread: str, *questions: str) -> str:
    messages = []
    for q in questions:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": q.upper()}]
    return json.dumps({"id": thread, "messages": messages})


class Kept:
    """What the engine keeps between reads: each log's position, and the head a path held."""

    def __init__(self) -> None:
        self.positions: dict[str, LogPosition] = {}
        self.heads: dict[str, str | None] = {}

    def read(self, path: Path, final: bool = False, max_bytes: int = 1 << 20) -> list[Indexed]:
        batches = list(
            index(
                path,
                str(path),
                self.heads.get(str(path)),
                self.positions.get,
                OPTIONS,
                max_bytes,
                final=final,
            )
        )
        for batch in batches:
            if batch.position is not None:
                self.positions[batch.position.head] = batch.position
            if batch.record is not None:
                self.heads[str(path)] = batch.record.head
        return batches


def refs(batches: list[Indexed]) -> list[LineRef]:
    return [ref for batch in batches for ref, _ in batch.refs]


def test_appended_lines_are_read_once_and_grouped_by_conversation(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    log.write_text(event("a", "user", "hi") + "\n" + event("b", "user", "yo") + "\n")
    first = kept.read(log)
    assert [(r.thread_id, r.line_no) for r in refs(first)] == [("a", 1), ("b", 2)]
    (position,) = kept.positions.values()
    assert position.offset == log.stat().st_size and position.lines == 2

    with log.open("a") as f:
        f.write(event("a", "assistant", "hello") + "\n")
    second = kept.read(log)
    assert [(r.thread_id, r.line_no) for r in refs(second)] == [("a", 3)]
    assert second[0].stale_head is None
    assert refs(kept.read(log)) == []  # nothing new: nothing read


def test_a_half_written_last_line_waits_for_its_newline(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    line = event("a", "user", "hi")
    log.write_text(line + "\n" + line[:10])
    assert len(refs(kept.read(log))) == 1
    assert next(iter(kept.positions.values())).offset == len(line) + 1
    with log.open("a") as f:
        f.write(line[10:] + "\n")
    assert [r.line_no for r in refs(kept.read(log))] == [2]


def test_a_final_file_takes_a_last_line_without_newline_only_if_it_is_whole(tmp_path: Path):
    log, kept = tmp_path / "dataset.jsonl", Kept()
    log.write_text(whole("t1", "q") + "\n" + whole("t2", "q"))
    assert [r.thread_id for r in refs(kept.read(log, final=True))] == ["t1", "t2"]
    # Later the writer adds the newline and more: nothing is read twice.
    with log.open("a") as f:
        f.write("\n" + whole("t3", "q") + "\n")
    assert [r.thread_id for r in refs(kept.read(log, final=True))] == ["t3"]


def test_truncation_and_rewrite_restart_and_say_the_old_lines_are_stale(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    log.write_text(event("a", "user", "one") + "\n" + event("a", "user", "two") + "\n")
    kept.read(log)
    log.write_text(event("a", "user", "one") + "\n")  # truncated (copytruncate)
    batches = kept.read(log)
    assert batches[0].stale_head is not None and [r.line_no for r in refs(batches)] == [1]
    # Rewritten in place with the same first line but other lines after it.
    log.write_text(event("a", "user", "one") + "\n" + event("d", "user", "x") + "\n")
    kept.read(log)
    log.write_text(event("a", "user", "one") + "\n" + event("e", "user", "y") + "\n")
    batches = kept.read(log)
    assert batches[0].stale_head is not None and [r.thread_id for r in refs(batches)] == ["a", "e"]


def test_a_rotated_log_is_finished_before_the_new_one_is_read(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    log.write_text(event("a", "user", "one") + "\n")
    kept.read(log)
    with log.open("a") as f:  # written just before the rotation, never read yet
        f.write(event("a", "assistant", "two") + "\n")
    os.rename(log, tmp_path / "chat.jsonl.1")
    log.write_text(event("c", "user", "new file") + "\n")
    batches = kept.read(log)
    assert [(r.thread_id, r.line_no) for r in refs(batches)] == [("a", 2), ("c", 1)]
    assert all(b.stale_head is None for b in batches)


def test_a_renamed_or_copied_log_is_not_read_again(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    log.write_text(event("a", "user", "one") + "\n")
    kept.read(log)
    renamed = tmp_path / "chat-2026.jsonl"
    os.rename(log, renamed)
    with renamed.open("a") as f:
        f.write(event("a", "assistant", "two") + "\n")
    assert [r.line_no for r in refs(kept.read(renamed))] == [2]


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
    batches = Kept().read(log)
    kinds = [(ref.thread_id, whole_) for ref, whole_ in batches[0].refs]
    assert kinds == [("t1", True), ("t2", False), ("t2", False)]
    assert batches[0].touched == {"t1": False, "t2": True}
    bad = {line.number: line.problem.reason for line in batches[0].bad if line.problem}
    assert "not valid JSON" in bad[4] and 5 in bad


def test_a_line_over_the_limit_is_quarantined_without_being_held_in_memory(tmp_path: Path):
    log = tmp_path / "chat.jsonl"
    log.write_text(event("a", "user", "x" * 5000) + "\n" + event("b", "user", "ok") + "\n")
    batches = Kept().read(log, max_bytes=1024)
    assert [line.number for b in batches for line in b.bad] == [1]
    assert [r.thread_id for r in refs(batches)] == ["b"]


def test_a_conversation_is_assembled_from_its_lines_even_after_rotation(tmp_path: Path):
    log, kept = tmp_path / "chat.jsonl", Kept()
    log.write_text(event("a", "user", "question") + "\n" + event("z", "user", "other") + "\n")
    first = kept.read(log)
    os.rename(log, tmp_path / "chat.jsonl.1")
    log.write_text(event("a", "assistant", "answer\nwith two lines", model="m1") + "\n")
    second = kept.read(log)
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
    batches = Kept().read(log)
    conversation, _ = assemble("th", refs(batches), OPTIONS, 1 << 20)
    assert [m.content for m in conversation.messages] == ["What is 2+2?", "It is 4."]
