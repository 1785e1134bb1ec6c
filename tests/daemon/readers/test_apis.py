"""API bodies (OpenAI, Anthropic, Ollama, Gemini, Responses, Assistants), the envelopes around
them (logged request + response, batch lines) and dataset rows: table tests of the dialogue."""

from __future__ import annotations

from typing import Any

import pytest

from labelsync import readers
from labelsync.contract import InvalidConversation

USER = {"role": "user", "content": "Hi"}


def _talk(doc: Any) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in readers.read(doc, many=True).messages]


@pytest.mark.parametrize(
    ("doc", "dialogue"),
    [
        pytest.param(
            {"messages": [USER, {"role": "assistant", "content": None, "refusal": "I can't."}]},
            [("user", "Hi"), ("assistant", "I can't.")],
            id="openai-refusal-instead-of-content",
        ),
        pytest.param(
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": ""},
                    {"role": "user", "content": "?"},
                ]
            },
            [("user", "Hi"), ("user", "?")],
            id="an-empty-message-is-not-a-turn",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "See"},
                            {"type": "tool_result", "tool_use_id": "t", "content": "ok"},
                        ],
                    },
                ]
            },
            [("user", "See"), ("tool", "[tool result] ok")],
            id="text-before-a-result-stays-before-it",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": "Hi", "images": ["aGk="]},
                    {
                        "role": "assistant",
                        "content": "",
                        "thinking": "hm",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
                    },
                    {"role": "tool", "content": "1"},
                ]
            },
            [
                ("user", "[image]\nHi"),
                ("assistant", '[thinking] hm\n[tool call: f({"x": 1})]'),
                ("tool", "[tool result: f] 1"),
            ],
            id="ollama-images-first-thinking-and-a-single-call-names-its-result",
        ),
        pytest.param(
            {
                "messages": [
                    USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "function": {"name": "run", "arguments": "ls -la"}}
                        ],
                    },
                ]
            },
            [("user", "Hi"), ("assistant", '[tool call: run("ls -la")]')],
            id="arguments-that-are-not-json-are-a-json-string",
        ),
        pytest.param(
            {
                "conversations": [
                    {"from": "human", "value": "2+2?"},
                    {"from": "function_call", "value": "not json"},
                    {"from": "observation", "value": "4"},
                ]
            },
            [
                ("user", "2+2?"),
                ("assistant", '[tool call: ?("not json")]'),
                ("tool", "[tool result] 4"),
            ],
            id="sharegpt-call-that-is-not-json-is-kept",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "value": "hi"},
                            {"type": "reasoning", "value": "r"},
                        ],
                    }
                ]
            },
            [("user", "hi\n[thinking] r")],
            id="llama-factory-parts-say-value",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "step-start"}, {"type": "hologram", "x": 1}],
                    }
                ]
            },
            [("user", "[hologram]")],
            id="a-bare-marker-is-dropped-a-block-with-content-is-not",
        ),
    ],
)
def test_message_bodies(doc: dict[str, Any], dialogue: list[tuple[str, str]]) -> None:
    assert _talk(doc) == dialogue


def test_a_chat_body_with_max_tokens_is_openai_not_anthropic() -> None:
    body = {
        "model": "gpt-4o",
        "max_tokens": 5,
        "messages": [{"role": "system", "content": "s"}, USER],
    }
    assert readers.read(body, many=True).shape == "openai"


def test_wildchat_rows_are_named_by_their_hash_and_replies_by_the_rows_model() -> None:
    row = {
        "conversation_hash": "h1",
        "model": "gpt-4",
        "conversation": [USER, {"role": "assistant", "content": "Yo"}],
    }
    conversation = readers.read(row, many=True)
    assert conversation.thread_id == "h1" and conversation.final
    assert [m.model for m in conversation.messages] == [None, "gpt-4"]


@pytest.mark.parametrize(
    ("doc", "dialogue", "model"),
    [
        pytest.param(
            {
                "request": {"messages": [USER]},
                "response": {
                    "model": "m-1",
                    "choices": [
                        {"message": {"role": "assistant", "content": "A"}},
                        {"message": {"role": "assistant", "content": "B"}},
                    ],
                },
            },
            [("user", "Hi"), ("assistant", "A")],
            "m-1",
            id="openai-n2-the-first-choice",
        ),
        pytest.param(
            {
                "request": {"contents": [{"parts": [{"text": "Hi"}]}]},
                "response": {
                    "modelVersion": "gemini-2.5-flash",
                    "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}}],
                },
            },
            [("user", "Hi"), ("assistant", "Hello")],
            "gemini-2.5-flash",
            id="gemini-candidates",
        ),
        pytest.param(
            {
                "request": {"model": "o4-mini", "input": "Hi"},
                "response": {
                    "object": "response",
                    "model": "o4-mini-2025",
                    "output": [
                        {"type": "reasoning", "summary": []},
                        {
                            "type": "message",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": "Hello"}],
                        },
                    ],
                },
            },
            [("user", "Hi"), ("assistant", "Hello")],
            "o4-mini-2025",
            id="responses-output",
        ),
        pytest.param(
            {"request": {"messages": [USER]}, "response": "Hello"},
            [("user", "Hi"), ("assistant", "Hello")],
            None,
            id="a-plain-text-response",
        ),
    ],
)
def test_logged_request_and_response(
    doc: dict[str, Any], dialogue: list[tuple[str, str]], model: str | None
) -> None:
    conversation = readers.read(doc, many=True)
    assert [(m.role, m.content) for m in conversation.messages] == dialogue
    assert conversation.model == model
    assert conversation.messages[-1].model == model


def test_a_logged_error_response_is_reported_not_hidden() -> None:
    doc = {"request": {"messages": [USER]}, "response": {"error": {"message": "overloaded"}}}
    conversation = readers.read(doc, many=True)
    assert [m.content for m in conversation.messages] == ["Hi"]
    assert any("no reply" in w for w in conversation.warnings)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (
            {"custom_id": "r1", "result": {"type": "succeeded", "message": {}}},
            "holds only the reply",
        ),
        ({"custom_id": "r1", "body": {"text": "hi"}}, "batch request body: no message list"),
        ({"request": {"prompt": "hi"}, "response": {}}, "logged request: no message list"),
    ],
)
def test_envelopes_that_hold_no_conversation_get_a_reason(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidConversation) as info:
        readers.read(doc, many=True)
    assert reason in info.value.reason


def test_responses_request_bound_to_a_conversation_is_named_by_it() -> None:
    doc = {
        "model": "gpt-4.1",
        "conversation": {"id": "conv_1"},
        "input": [{"role": "user", "content": "Hi"}],
    }
    assert readers.read(doc, many=True).thread_id == "conv_1"


def test_responses_turn_is_merged_until_its_message() -> None:
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "look it up"}]},
        {"type": "web_search_call", "id": "ws1", "action": {"query": "weather"}},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny."}],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Anything else?"}],
        },
    ]
    assert _talk(items) == [
        ("user", "Weather?"),
        (
            "assistant",
            '[thinking] look it up\n[tool call: web_search({"query": "weather"})]\nSunny.',
        ),
        ("assistant", "Anything else?"),
    ]


def test_bare_lists_of_gemini_contents_and_assistants_messages() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Yo"}]},
    ]
    assert readers.read(contents, file_name="chat.json").shape == "gemini"
    thread = [
        {
            "object": "thread.message",
            "thread_id": "t1",
            "created_at": 2,
            "role": "assistant",
            "content": [{"type": "text", "text": {"value": "Yo"}}],
        },
        {
            "object": "thread.message",
            "thread_id": "t1",
            "created_at": 1,
            "role": "user",
            "content": [{"type": "text", "text": {"value": "Hi"}}],
        },
    ]
    conversation = readers.read(thread, file_name="thread.json")
    assert conversation.thread_id == "t1"
    assert [m.content for m in conversation.messages] == ["Hi", "Yo"]


@pytest.mark.parametrize(
    ("block", "shown"),
    [
        (
            {"type": "web_search_result", "title": "T", "url": "https://x.test/"},
            "[search result: T — https://x.test/]",
        ),
        ({"type": "knowledge", "title": "T"}, "[search result: T]"),
        ({"type": "voice_note", "transcript": "hello"}, "[voice note] hello"),
        ({"type": "file", "mediaType": "image/png", "filename": "a.png"}, "[image]"),
        (
            {"type": "document", "source": {"media_type": "application/pdf"}, "title": "Lease"},
            "[file: Lease]",
        ),
        (
            {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
            "```python\nprint(1)\n```",
        ),
        (
            {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1\n"}},
            "[code result: OUTCOME_OK] 1",
        ),
    ],
)
def test_blocks_show_what_a_reader_wants_to_see(block: dict[str, Any], shown: str) -> None:
    doc = {"messages": [{"role": "assistant", "content": [block]}]}
    conversation = readers.read(doc, many=True)
    assert conversation.messages[0].content == shown
    assert not conversation.warnings


def test_a_tool_result_keeps_its_leading_spaces() -> None:
    doc = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "tool_result", "name": "cat", "content": "\n  1\tx\n"}],
            }
        ]
    }
    assert _talk(doc) == [("tool", "[tool result: cat]   1\tx")]
