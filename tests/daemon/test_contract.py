"""The file contract: every supported shape parses to the same conversation."""

import json

import pytest

from labelsync.contract import Fields, InvalidConversation, parse


def doc(obj) -> bytes:
    return json.dumps(obj).encode()


TUTORIAL = {
    "session_id": "sess-1",
    "timestamp": "2026-11-24T10:00:00",
    "model": "llama3.2",
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ],
    "turn_count": 1,
    "metadata": {"thread_id": "thread-9", "user": "ann"},
}


def test_tutorial_shape_uses_metadata_thread_id_and_keeps_the_rest():
    c = parse(doc(TUTORIAL), "conversation_sess-1.json")
    assert c.thread_id == "thread-9"
    assert c.shape == "tutorial"
    assert c.model == "llama3.2"
    assert [(m.role, m.content) for m in c.messages] == [
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
    ]
    assert c.user_turns == 1
    assert c.extra == {"session_id": "sess-1", "metadata": {"thread_id": "thread-9", "user": "ann"}}


@pytest.mark.parametrize(
    ("document", "file_name", "expected"),
    [
        ({"thread_id": "t", "session_id": "s", "id": "i"}, "x.json", "t"),
        ({"session_id": "s", "id": "i"}, "x.json", "s"),
        ({"id": "i"}, "x.json", "i"),
        ({"id": 42}, "x.json", "42"),
        ({}, "conversation_abc123.json", "abc123"),
        ({}, "conversation_abc123_20261124_101500.json", "abc123"),
        ({}, "chat-7.json", "chat-7"),
        ({"metadata": {"thread_id": "  "}, "session_id": "s"}, "x.json", "s"),
    ],
)
def test_identity_order(document, file_name, expected):
    document = {**document, "messages": [{"role": "user", "content": "q"}]}
    assert parse(doc(document), file_name).thread_id == expected


def test_autosave_and_snapshot_names_are_one_conversation():
    body = {"messages": [{"role": "user", "content": "q"}]}
    a = parse(doc(body), "conversation_42.json")
    b = parse(doc(body), "conversation_42_20261124_093000.json")
    assert a.thread_id == b.thread_id == "42"
    assert a.sync_key == b.sync_key


def test_openai_content_parts_are_joined_and_placeholders_kept():
    c = parse(
        doc(
            {
                "id": "chatcmpl-1",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this picture?"},
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"function": {"name": "describe", "arguments": "{}"}}],
                    },
                    {"role": "tool", "content": "a cat"},
                ],
            }
        ),
        "x.json",
    )
    assert c.shape == "openai"
    assert c.messages[1].content == "What is in this picture?\n[image]"
    assert c.messages[2].content == "[tool call: describe({})]"
    assert all(isinstance(m.content, str) for m in c.messages)


def test_sharegpt_roles_are_mapped():
    c = parse(
        doc(
            {
                "id": "s1",
                "conversations": [
                    {"from": "system", "value": "sys"},
                    {"from": "human", "value": "hi"},
                    {"from": "gpt", "value": "hello"},
                ],
            }
        ),
        "x.json",
    )
    assert c.shape == "sharegpt"
    assert [m.role for m in c.messages] == ["system", "user", "assistant"]


def test_sync_key_ignores_what_changes_without_meaning():
    base = parse(doc(TUTORIAL), "a.json")
    resaved = parse(
        doc(
            {
                **TUTORIAL,
                "timestamp": "2030-01-01",
                "turn_count": 7,
                "model": "other",
                "ended": True,
            }
        ),
        "b.json",
    )
    assert base.sync_key == resaved.sync_key


def test_sync_key_changes_with_content_feedback_and_conversation():
    base = parse(doc(TUTORIAL), "a.json")
    grown = {**TUTORIAL, "messages": [*TUTORIAL["messages"], {"role": "user", "content": "more"}]}
    feedback = {
        **TUTORIAL,
        "messages": [
            TUTORIAL["messages"][0],
            {**TUTORIAL["messages"][1], "feedback": {"score": 0}},
        ],
    }
    other = {**TUTORIAL, "metadata": {"thread_id": "another"}}
    keys = {parse(doc(d), "a.json").sync_key for d in (grown, feedback, other)}
    assert base.sync_key not in keys and len(keys) == 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"messages": [', "not valid JSON"),
        (b"[1, 2]", "top level is a JSON array"),
        (b'{"text": "hi"}', 'no message list: expected a "messages" or "conversations" array'),
        (b'{"messages": []}', '"messages" is empty'),
        (b'{"messages": {"a": 1}}', '"messages" is a JSON object, expected an array'),
        (b'{"messages": ["hi"]}', "messages[0] is a JSON string, expected an object"),
        (b'{"messages": [{"content": "hi"}]}', 'messages[0] has no "role" or "from" string'),
        (b'{"messages": [{"role": "user"}]}', 'messages[0] has no "content" or "value" or "text"'),
        (
            b'{"messages": [{"role": "user", "content": {"a": 1}}]}',
            "messages[0] content is a JSON object",
        ),
        (b"\xff\xfe{}", "not UTF-8"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "x": '
            + b"[" * 100
            + b"]" * 100
            + b"}",
            "nests deeper than 64 levels",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    ],
)
def test_bad_files_get_one_line_reason(raw, reason):
    with pytest.raises(InvalidConversation) as info:
        parse(raw, "bad.json")
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_fields_are_configurable_for_other_bots():
    fields = Fields(
        id_fields=("conv.uuid",),
        messages_fields=("turns",),
        role_keys=("speaker",),
        content_keys=("utterance",),
    )
    c = parse(
        doc(
            {
                "conv": {"uuid": "u-1"},
                "turns": [
                    {"speaker": "Human", "utterance": "hi"},
                    {"speaker": "bot", "utterance": "yo"},
                ],
            }
        ),
        "x.json",
        fields,
    )
    assert c.thread_id == "u-1"
    assert [(m.role, m.content) for m in c.messages] == [("user", "hi"), ("assistant", "yo")]
