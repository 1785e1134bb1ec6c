"""The registry: which reader takes which fixture, branch choice in trees, stable ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelsync import readers
from labelsync.readers import events
from labelsync.readers.base import Options
from tests.daemon.readers.reading import FIXTURES, dialogue, fixture_names, read_fixture

# The reader each fixture is meant for, one shape per conversation in file order.
# Message-per-line logs are grouped by the engine ("events"); their lines' kind is below.
SHAPES = {
    "ai_studio_prompt.json": ["aistudio-prompt"],
    "anthropic_batch_requests.jsonl": ["anthropic-batch"] * 2,
    "anthropic_logged.jsonl": ["anthropic-logged"] * 2,
    "anthropic_messages.jsonl": ["anthropic"] * 3,
    "chainlit_steps.jsonl": ["events"] * 2,
    "chainlit_threads.json": ["chainlit-thread"] * 2,
    "chatgpt_export.json": ["chatgpt-export"] * 3,
    "claude_ai_export.json": ["claude-export"] * 3,
    "event_log.jsonl": ["events"] * 2,
    "event_log_session_id.jsonl": ["events"] * 2,
    "event_log_thread_id.jsonl": ["events"] * 2,
    "gemini_contents.jsonl": ["gemini"] * 3,
    "langchain_lc.json": ["langchain"],
    "langchain_messages.json": ["langchain"],
    "langchain_sql_history.jsonl": ["events"] * 2,
    "librechat_export_flat.json": ["librechat-export"],
    "librechat_export_tree.json": ["librechat-export"],
    "lmsys_chat.jsonl": ["lmsys"] * 3,
    "ollama_chat.jsonl": ["ollama"] * 3,
    "ollama_logged.jsonl": ["ollama-logged"] * 2,
    "open_webui_export.json": ["openwebui-export"] * 3,
    "openai_assistants_messages.json": ["openai-assistants"],
    "openai_batch_requests.jsonl": ["openai-batch", "openai-responses-batch"],
    "openai_chat_completions.jsonl": ["openai"] * 3,
    "openai_chat_logged.jsonl": ["openai-logged"] * 2,
    "openai_finetune.jsonl": ["openai"] * 4,
    "openai_responses.jsonl": ["openai-responses"] * 4,
    "rasa_events.jsonl": ["events"] * 2,
    "sharegpt.json": ["sharegpt"] * 4,
    "vercel_ai_ui_messages.json": ["vercel-ai"],
    "wildchat.jsonl": ["wildchat"] * 2,
}
LINE_KINDS = {
    "chainlit_steps.jsonl": "chainlit-step",
    "event_log.jsonl": "message",
    "event_log_session_id.jsonl": "message",
    "event_log_thread_id.jsonl": "message",
    "langchain_sql_history.jsonl": "langchain-sql",
    "rasa_events.jsonl": "rasa",
}
# Exports and data sets cannot grow: a short conversation there is "too short" at once.
FINAL = {
    "ai_studio_prompt.json",
    "anthropic_batch_requests.jsonl",
    "chainlit_threads.json",
    "chatgpt_export.json",
    "claude_ai_export.json",
    "librechat_export_flat.json",
    "librechat_export_tree.json",
    "lmsys_chat.jsonl",
    "open_webui_export.json",
    "openai_assistants_messages.json",
    "openai_batch_requests.jsonl",
    "sharegpt.json",
    "wildchat.jsonl",
}


def test_every_fixture_has_its_intended_reader() -> None:
    assert sorted(SHAPES) == fixture_names()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_fixture_is_read_by_the_intended_reader(name: str) -> None:
    read = read_fixture(name)
    assert [c.shape for c in read.conversations] == SHAPES[name]
    assert {c.final for c in read.conversations} == {name in FINAL}


@pytest.mark.parametrize("name", sorted(LINE_KINDS))
def test_each_line_of_a_log_is_an_event_of_its_family(name: str) -> None:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    kinds = {events.kind(json.loads(line), Options()) for line in lines if line.strip()}
    assert kinds == {LINE_KINDS[name]}


@pytest.mark.parametrize(
    ("name", "one_conversation"),
    [
        ("vercel_ai_ui_messages.json", True),
        ("langchain_messages.json", True),
        ("langchain_lc.json", True),
        ("chatgpt_export.json", False),
        ("claude_ai_export.json", False),
        ("open_webui_export.json", False),
        ("sharegpt.json", False),
        ("chainlit_threads.json", False),
    ],
)
def test_a_top_level_array_is_told_apart(name: str, one_conversation: bool) -> None:
    items = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert readers.is_message_list(items) is one_conversation


# --- trees: the dialogue is the branch the user saw -------------------------------------


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _contents(doc: Any) -> list[str]:
    return [m["content"] for m in dialogue(readers.read(doc, many=True))]


def test_chatgpt_follows_current_node_not_file_order() -> None:
    conversation = _load("chatgpt_export.json")[0]
    shown = _contents(conversation)
    assert "Yes, throw it out and start a new one." not in shown  # the regenerated-away answer
    # Point current_node at the other answer: that branch is the dialogue now.
    conversation["current_node"] = "f3a1c2d4-0a1b-4c5d-8e9f-000000a1old"
    assert _contents(conversation) == [shown[0], "Yes, throw it out and start a new one."]


def test_open_webui_follows_current_id_even_to_an_older_branch() -> None:
    chat = _load("open_webui_export.json")[2]
    assert _contents(chat)[0] == "Translate 'good morning' into Portuguese."  # older root
    chat["chat"]["history"]["currentId"] = "e2d3c4b5-a6f7-4809-9a1b-2c3d4e5f0304"
    assert _contents(chat) == ["Translate 'good morning' into Spanish.", "Buenos días."]
    del chat["chat"]["history"]["currentId"]  # no pointer: the most recent leaf
    assert _contents(chat)[-1] == "Boa noite."


def test_librechat_shows_the_last_sibling_as_its_ui_does() -> None:
    export = _load("librechat_export_tree.json")
    assert _contents(export)[1].startswith("The newest stable release is 3.13")
    answers = export["messagesTree"][0]["children"]
    answers.reverse()  # the other regeneration is now the last sibling
    assert _contents(export)[1:] == ["3.12 is the newest one I know of."]
    flat = _load("librechat_export_flat.json")
    assert _contents(flat)[1] == "write a haiku about snow"  # the newer root


def test_claude_takes_the_most_recent_leaf() -> None:
    conversation = _load("claude_ai_export.json")[0]
    assert _contents(conversation)[-2] == "And the climbing beans, which need a fence?"
    # Make the other branch's answer the most recent message: it is the dialogue then.
    conversation["chat_messages"][3]["created_at"] = "2025-05-10T09:00:00.000000Z"
    assert _contents(conversation)[-2:] == ["And the beans?", "Beans can go in Bed B."]


def test_assistants_messages_are_put_back_in_time_order() -> None:
    listing = _load("openai_assistants_messages.json")
    listing["data"].reverse()  # oldest first, as `order=asc` lists them
    assert _contents(listing) == _contents(_load("openai_assistants_messages.json"))


# --- identity of conversations without an id of their own --------------------------------


def _write_reordered(name: str, tmp_path: Path) -> Path:
    source = FIXTURES / name
    target = tmp_path / name
    if name.endswith(".jsonl"):
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        target.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    else:
        target.write_text(json.dumps(list(reversed(_load(name)))), encoding="utf-8")
    return target


@pytest.mark.parametrize(
    "name",
    [
        "openai_finetune.jsonl",
        "sharegpt.json",
        "anthropic_messages.jsonl",
        "gemini_contents.jsonl",
        "openai_responses.jsonl",
    ],
)
def test_ids_are_stable_when_a_file_without_ids_is_reordered(name: str, tmp_path: Path) -> None:
    before = {(c.thread_id, c.sync_key) for c in read_fixture(name).conversations}
    moved = read_fixture(name, _write_reordered(name, tmp_path))
    assert {(c.thread_id, c.sync_key) for c in moved.conversations} == before
    assert len({thread for thread, _ in before}) == len(before)  # and they stay distinct


def test_a_logged_conversation_that_grows_keeps_its_id() -> None:
    """A request log holds the whole history at each call: the next call is a new version."""

    def logged(history: list[dict[str, str]], answer: str) -> dict[str, Any]:
        reply = {"role": "assistant", "content": answer}
        return {
            "request": {"model": "gpt-4o-mini", "messages": history},
            "response": {"object": "chat.completion", "choices": [{"message": reply}]},
        }

    question = {"role": "user", "content": "Hi"}
    first = readers.read(logged([question], "Hello"), many=True)
    history = [question, {"role": "assistant", "content": "Hello"}]
    second = readers.read(
        logged([*history, {"role": "user", "content": "More?"}], "Sure"), many=True
    )
    assert second.thread_id == first.thread_id
    assert second.sync_key != first.sync_key
    assert [m.content for m in second.messages] == ["Hi", "Hello", "More?", "Sure"]
