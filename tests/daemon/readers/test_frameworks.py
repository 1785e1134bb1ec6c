"""Framework dumps (LangChain, Chainlit, Rasa, Vercel AI SDK) and message-per-line events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelsync import readers
from labelsync.contract import InvalidConversation
from labelsync.readers import events
from labelsync.readers.base import Options
from tests.daemon.readers.reading import FIXTURES, read_fixture


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _talk(doc: Any, **kwargs: Any) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in readers.read(doc, **kwargs).messages]


def _lc(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"content": "", **data}}


@pytest.mark.parametrize(
    ("items", "dialogue"),
    [
        pytest.param(
            [_lc("chat", role="user", content="Hi"), _lc("AIMessageChunk", content="Yo")],
            [("user", "Hi"), ("assistant", "Yo")],
            id="chat-role-and-chunks",
        ),
        pytest.param(
            [
                _lc(
                    "ai",
                    additional_kwargs={
                        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]
                    },
                ),
                _lc("tool", content="boom", tool_call_id="c1", status="error"),
            ],
            [("assistant", "[tool call: f({})]"), ("tool", "[tool error: f] boom")],
            id="raw-calls-when-none-parsed-and-a-failed-tool",
        ),
    ],
)
def test_langchain_messages(items: list[Any], dialogue: list[tuple[str, str]]) -> None:
    assert _talk(items, file_name="history.json") == dialogue


def test_langchain_inside_an_object_is_langchain_not_generic() -> None:
    doc = {"messages": _load("langchain_messages.json")}
    assert readers.read(doc, file_name="h.json").shape == "langchain"


def test_langchain_sql_row_that_is_not_a_message_gets_a_reason() -> None:
    row = {"id": 7, "session_id": "s", "message": json.dumps({"type": "human", "data": 3})}
    assert not events.is_event(row, Options())  # not LangChain's: left to the other readers
    with pytest.raises(InvalidConversation):
        readers.read(row, many=True)


def test_chainlit_feedback_and_the_model_of_the_llm_step() -> None:
    thread = _load("chainlit_threads.json")[0]
    answer = readers.read(thread, many=True).messages[3]
    assert answer.content.startswith("Damaged goods")
    assert answer.feedback == {"score": 1}
    assert answer.model == "gpt-4o-mini"


def test_chainlit_running_tool_step_waits_for_its_result() -> None:
    step = {"type": "tool", "name": "search", "threadId": "t", "input": "{}", "output": ""}
    assert events.event_messages(step, "line 1", Options()) == []
    done = {**step, "output": "3 hits", "end": "2025-11-05T09:00:02Z"}
    shown = [(m.role, m.content) for m in events.event_messages(done, "line 2", Options())]
    assert shown == [
        ("assistant", "[tool call: search({})]"),
        ("tool", "[tool result: search] 3 hits"),
    ]


def test_chainlit_bare_step_list_is_one_conversation() -> None:
    steps = _load("chainlit_threads.json")[1]["steps"]
    conversation = readers.read(steps, file_name="steps.json")
    assert conversation.shape == "chainlit-steps"
    assert conversation.thread_id == "b8e2c0f4-1d3a-4e5b-9c6d-7e8f9a0b1c02"
    assert len(conversation.messages) == 3


def test_rasa_tracker_dump_and_bot_buttons() -> None:
    tracker = {
        "sender_id": "s1",
        "events": [
            {"event": "action", "name": "action_listen"},
            {"event": "user", "text": "Size?"},
            {
                "event": "bot",
                "text": "Pick one",
                "data": {"buttons": [{"title": "S"}, {"title": "M"}]},
            },
        ],
    }
    conversation = readers.read(tracker, many=True)
    assert conversation.shape == "rasa-tracker" and conversation.thread_id == "s1"
    assert _talk(tracker, many=True) == [
        ("user", "Size?"),
        ("assistant", "[buttons: S | M]\nPick one"),
    ]


@pytest.mark.parametrize(
    ("line", "kind", "thread"),
    [
        ({"sender_id": "s", "event": "slot", "name": "x"}, "rasa", "s"),
        (
            {"session_id": "s", "message": '{"type": "ai", "data": {"content": "x"}}'},
            "langchain-sql",
            "s",
        ),
        ({"threadId": "t", "type": "run", "output": ""}, "chainlit-step", "t"),
        ({"thread_id": "t", "role": "user", "content": "x"}, "message", "t"),
        ({"conversation_id": "c", "ended": True}, "end", "c"),
        ({"messages": [{"role": "user", "content": "x"}]}, None, None),
    ],
)
def test_each_kind_of_log_line_is_told_apart(
    line: dict[str, Any], kind: str | None, thread: str | None
) -> None:
    assert events.kind(line, Options()) == kind
    assert events.conversation_of(line) == thread


def test_vercel_ai_sdk_4_tool_invocations_and_chat_object() -> None:
    chat = {
        "id": "chat-42",
        "messages": [
            {"id": "1", "role": "user", "parts": [{"type": "text", "text": "Time?"}]},
            {
                "id": "2",
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool-invocation",
                        "toolInvocation": {
                            "toolName": "clock",
                            "toolCallId": "c",
                            "args": {},
                            "state": "result",
                            "result": "9:00",
                        },
                    },
                    {"type": "data-weather", "data": {"temp": 20}},
                ],
            },
        ],
    }
    conversation = readers.read(chat, file_name="chat-42.json")
    assert conversation.thread_id == "chat-42" and conversation.shape == "vercel-ai"
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", "Time?"),
        ("assistant", "[tool call: clock({})]"),
        ("tool", "[tool result: clock] 9:00"),
        ("assistant", "[data-weather]"),
    ]
    assert any("data-weather" in w for w in conversation.warnings)


def test_interleaved_rasa_log_is_grouped_per_sender_in_order(tmp_path: Path) -> None:
    lines = (FIXTURES / "rasa_events.jsonl").read_text(encoding="utf-8").splitlines()
    first = [line for line in lines if "a3c9f1e07b2d4e6f" in line]
    log = tmp_path / "rasa_events.jsonl"
    log.write_text("\n".join(first) + "\n", encoding="utf-8")
    only = read_fixture("rasa_events.jsonl", log).conversations
    assert [c.thread_id for c in only] == ["a3c9f1e07b2d4e6f"]
    assert only[0].messages == read_fixture("rasa_events.jsonl").conversations[0].messages
