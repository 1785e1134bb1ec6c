"""labelsync_chatbot/writer.py: atomic files in the contract's shape."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime

import pytest
from chatbot_contract import assert_follows_contract, labelsync_validate

from labelsync_chatbot.conversation import Conversation, Said, record_turn, to_contract
from labelsync_chatbot.writer import (
    UnsafeThreadId,
    conversation_path,
    read_conversation,
    write_conversation,
)

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def conversation_with(turns: int, thread_id: str = "3f1c2d9e-0000-4000-8000-000000000001"):
    conv = Conversation(thread_id=thread_id, session_id="s", system_prompt="Be brief.")
    for i in range(turns):
        record_turn(
            conv, Said(f"u{i}", f"question {i} " + "x" * 2000, T0),
            Said(f"a{i}", f"answer {i}", T0), model="m:latest", provider="ollama",
        )
    return conv


def test_file_is_named_by_thread_id_and_reads_back(tmp_path):
    data = to_contract(conversation_with(2), T0)
    path = write_conversation(tmp_path / "conversations", data)
    assert path == tmp_path / "conversations" / f"conversation_{data['thread_id']}.json"
    assert json.loads(path.read_text()) == data
    assert read_conversation(tmp_path / "conversations", data["thread_id"]) == data
    assert_follows_contract(data)


def test_no_temp_files_are_left_behind(tmp_path):
    for turns in range(1, 6):
        write_conversation(tmp_path, to_contract(conversation_with(turns), T0))
    assert [p.name for p in tmp_path.iterdir()] == [
        "conversation_3f1c2d9e-0000-4000-8000-000000000001.json"
    ]


def test_file_is_readable_by_others(tmp_path):
    # The daemon may run as another user (systemd DynamicUser).
    path = write_conversation(tmp_path, to_contract(conversation_with(1), T0))
    assert os.stat(path).st_mode & 0o044 == 0o044


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x" * 300])
def test_thread_ids_that_cannot_name_a_file_are_refused(tmp_path, bad):
    with pytest.raises(UnsafeThreadId):
        conversation_path(tmp_path, bad)


def test_a_concurrent_reader_never_sees_a_half_written_file(tmp_path):
    """Rewrite one conversation many times while another thread keeps reading it:
    every read parses, follows the contract, and is one of the written versions."""
    rewrites = 300
    versions = [to_contract(conversation_with(1 + i % 7), T0) for i in range(rewrites)]
    path = conversation_path(tmp_path, versions[0]["thread_id"])
    write_conversation(tmp_path, versions[0])
    done = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not done.is_set() or not seen:
            try:
                text = path.read_text()
                data = json.loads(text)
                assert_follows_contract(data)
            except Exception as exc:  # any failure is the finding
                bad.append(f"{type(exc).__name__}: {exc}")
                continue
            seen.append(data["turn_count"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for data in versions[1:]:
            write_conversation(tmp_path, data)
    finally:
        done.set()
        thread.join()
    assert bad == []
    assert len(seen) > 0
    assert set(seen) <= {v["turn_count"] for v in versions}
    assert json.loads(path.read_text()) == versions[-1]


def test_labelsync_validate_accepts_the_file(tmp_path):
    path = write_conversation(tmp_path, to_contract(conversation_with(2), T0))
    result = labelsync_validate(path)
    if result is None:
        pytest.skip("`labelsync validate` is not available in this venv yet")
    assert result.returncode == 0, result.stdout + result.stderr
