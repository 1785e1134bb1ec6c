"""Provider exports (ChatGPT, Claude.ai, Open WebUI, LibreChat, AI Studio): what beyond the
dialogue a user notices (title, model, time, feedback) and the reason given for an entry
that cannot be read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelsync import readers
from labelsync.contract import InvalidConversation
from tests.daemon.readers.reading import FIXTURES


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _talk(doc: Any) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in readers.read(doc, many=True).messages]


@pytest.mark.parametrize(
    ("name", "index", "title", "model", "timestamp"),
    [
        ("chatgpt_export.json", 0, "Sourdough starter", "o3", "2025-06-29T12:26:40.104Z"),
        ("chatgpt_export.json", 2, "Savings maths", "gpt-4", "2024-01-07T12:18:35.775Z"),
        ("claude_ai_export.json", 1, "Server timeouts", None, "2025-06-02T14:45:43.000000Z"),
        ("open_webui_export.json", 1, "Lisbon weather", "gpt-4o", "2024-11-13T12:13:20.000Z"),
    ],
)
def test_export_conversations_keep_title_model_and_time(
    name: str, index: int, title: str, model: str | None, timestamp: str
) -> None:
    conversation = readers.read(_load(name)[index], many=True)
    assert (conversation.title, conversation.model, conversation.timestamp) == (
        title,
        model,
        timestamp,
    )
    assert conversation.final  # an export cannot grow: a short one is "too short" at once


def test_chatgpt_replies_say_which_model_wrote_them() -> None:
    conversation = readers.read(_load("chatgpt_export.json")[0], many=True)
    assert [m.model for m in conversation.messages] == [None, "gpt-4o", None, "o3"]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"title": "x", "conversation_id": "c", "default_model_slug": "gpt-4o"}, "without"),
        ({"title": "x", "mapping": [], "current_node": "a"}, 'without "mapping"'),
        ({"uuid": "u", "chat_messages": {"a": 1}}, '"chat_messages" is a JSON object'),
        ({"uuid": "u", "chat_messages": [{"text": "hi"}]}, 'has no "sender"'),
        ({"conversationId": "c", "messagesTree": "x"}, "LibreChat export without"),
        ({"chunkedPrompt": {"chunks": 3}}, '"chunkedPrompt.chunks" is a JSON number'),
        ({"chunkedPrompt": {"chunks": [{"text": "hi"}]}}, 'has no "role"'),
        ({"id": "c", "chat": {"history": {"messages": {}, "currentId": None}}}, "no messages"),
    ],
)
def test_an_export_entry_that_is_not_a_conversation_gets_a_reason(
    doc: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidConversation) as info:
        readers.read(doc, many=True)
    assert reason in info.value.reason


def test_chatgpt_without_current_node_shows_the_most_recent_leaf() -> None:
    conversation = _load("chatgpt_export.json")[0]
    del conversation["current_node"]
    # The regenerated-away answer is older than the final one: the latest leaf wins.
    assert _talk(conversation)[-1][1].startswith("[thinking] Bubbles throughout")


def test_chatgpt_parent_cycle_ends_the_walk() -> None:
    doc = {
        "title": "loop",
        "current_node": "a",
        "mapping": {
            "a": {"parent": "b", "message": _chatgpt("assistant", "hello")},
            "b": {"parent": "a", "message": _chatgpt("user", "hi")},
        },
    }
    assert _talk(doc) == [("user", "hi"), ("assistant", "hello")]


def _chatgpt(role: str, text: str) -> dict[str, Any]:
    return {"author": {"role": role}, "content": {"content_type": "text", "parts": [text]}}


def test_chatgpt_assistant_text_to_the_user_and_its_call_are_one_turn() -> None:
    doc = {
        "title": "t",
        "current_node": "c",
        "mapping": {
            "u": {"parent": None, "message": _chatgpt("user", "Plot it")},
            "a": {"parent": "u", "message": _chatgpt("assistant", "Let me run it.")},
            "c": {
                "parent": "a",
                "message": {
                    "author": {"role": "assistant"},
                    "recipient": "python",
                    "content": {"content_type": "code", "text": "plot()"},
                },
            },
        },
    }
    assert _talk(doc) == [
        ("user", "Plot it"),
        ("assistant", 'Let me run it.\n[tool call: python("plot()")]'),
    ]


def test_claude_older_export_without_parent_links_is_read_in_file_order() -> None:
    conversation = _load("claude_ai_export.json")[2]
    conversation["chat_messages"].reverse()
    # No links, no tree: the file's order is the only order there is.
    assert _talk(conversation)[0][1].startswith("Nothing rhymes")


def test_open_webui_rating_is_the_users_feedback() -> None:
    chat = _load("open_webui_export.json")[2]
    answer = chat["chat"]["history"]["messages"]["e2d3c4b5-a6f7-4809-9a1b-2c3d4e5f0306"]
    answer["annotation"] = {"rating": -1, "comment": "too short"}
    last = readers.read(chat, many=True).messages[-1]
    assert last.feedback == {"score": 0, "comment": "too short"}


def test_open_webui_output_items_give_the_call_the_html_lacks() -> None:
    chat = _load("open_webui_export.json")[1]
    answer = chat["chat"]["history"]["messages"]["c41a7e3b-55d2-4d0b-9a1e-2f3c4d5e0202"]
    answer["content"] = '<details type="tool_calls"><summary>Tool</summary></details>It is 21C.'
    assert _talk(chat)[1] == (
        "assistant",
        '[tool call: get_weather({"city": "Lisbon", "unit": "C"})]',
    )


def test_librechat_thumbs_and_system_prompt() -> None:
    export = _load("librechat_export_flat.json")
    export["messages"][3]["feedback"] = {"rating": "thumbsUp"}
    conversation = readers.read(export)
    assert conversation.messages[0].role == "system"
    assert conversation.messages[-1].feedback == {"score": 1}
    assert conversation.messages[-1].model == "gpt-4o"


def test_librechat_children_without_parent_ids_still_form_the_tree() -> None:
    export = _load("librechat_export_tree.json")

    def strip(node: dict[str, Any]) -> None:
        node.pop("parentMessageId", None)
        for child in node.get("children", []):
            strip(child)

    for root in export["messagesTree"]:
        strip(root)
    assert len(readers.read(export).messages) == 6


def test_ai_studio_never_sent_draft_is_not_dialogue_and_model_is_named() -> None:
    prompt = _load("ai_studio_prompt.json")
    conversation = readers.read(prompt)
    assert all("120 cm" not in m.content for m in conversation.messages)
    assert conversation.model == "gemini-2.5-pro"
    prompt["systemInstruction"] = {"parts": [{"text": "Be brief."}]}
    assert readers.read(prompt).messages[0].content == "Be brief."
