"""The messages family (labelsync, tutorial, OpenAI, Anthropic, Ollama, ShareGPT, LMSYS)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelsync import readers
from labelsync.contract import InvalidConversation
from labelsync.readers.base import Options
from labelsync.sources import parse_json


def doc(obj) -> bytes:
    return json.dumps(obj).encode()


DEFAULT = Options()


def parse(raw: bytes, file_name: str, options: Options = DEFAULT):
    """A file holding one conversation, read the way the engine reads it."""
    return readers.read(parse_json(raw), options, file_name=file_name)


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
        ({"conversation_id": "c"}, "x.json", "c"),
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


def test_sync_key_changes_with_content_and_conversation_but_not_feedback():
    base = parse(doc(TUTORIAL), "a.json")
    grown = {**TUTORIAL, "messages": [*TUTORIAL["messages"], {"role": "user", "content": "more"}]}
    other = {**TUTORIAL, "metadata": {"thread_id": "another"}}
    keys = {parse(doc(d), "a.json").sync_key for d in (grown, other)}
    assert base.sync_key not in keys and len(keys) == 2
    rated = {
        **TUTORIAL,
        "messages": [
            TUTORIAL["messages"][0],
            {**TUTORIAL["messages"][1], "feedback": {"score": 0, "comment": "wrong"}},
        ],
    }
    with_feedback = parse(doc(rated), "a.json")
    # Feedback is not new content: same sync key, but it is noticed.
    assert with_feedback.sync_key == base.sync_key
    assert with_feedback.feedback_key and not base.feedback_key
    assert with_feedback.legacy_key != base.legacy_key  # 0.1 keyed on feedback too


def test_malformed_feedback_is_ignored_not_fatal():
    weird = {
        **TUTORIAL,
        "messages": [
            TUTORIAL["messages"][0],
            {**TUTORIAL["messages"][1], "feedback": {"score": [1], "comment": {"x": 1}}},
        ],
    }
    c = parse(doc(weird), "a.json")
    assert c.messages[1].feedback is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"text": "hi"}', 'no message list: expected a "messages" or "conversations"'),
        (b'{"messages": []}', "no messages: nothing to evaluate"),
        (b'{"messages": {"a": 1}}', '"messages" is a JSON object, expected an array'),
        (b'{"messages": ["hi"]}', "messages[0] is a JSON string, expected an object"),
        (b'{"messages": [{"content": "hi"}]}', 'messages[0] has no "role" or "from"'),
        (b'{"messages": [{"role": "user"}]}', 'messages[0] has no "content" or "value" or "text"'),
        (b'{"messages": [{"role": "skip-me", "content": "x"}]}', None),
    ],
)
def test_bad_conversations_get_one_line_reason(raw, reason):
    if reason is None:  # an unknown role is kept as it is
        assert parse(raw, "ok.json").messages[0].role == "skip-me"
        return
    with pytest.raises(InvalidConversation) as info:
        parse(raw, "bad.json")
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_an_unknown_block_is_a_placeholder_and_a_warning_never_dropped():
    c = parse(
        doc({"messages": [{"role": "user", "content": [{"type": "hologram", "x": 1}, "hi"]}]}),
        "a.json",
    )
    assert c.messages[0].content == "[hologram]\nhi"
    assert c.warnings and "hologram" in c.warnings[0]


def test_role_map_renames_and_skips():
    options = Options(
        role_map={"user_message": "user", "bot_message": "assistant", "debug": "skip"}
    )
    c = parse(
        doc(
            {
                "messages": [
                    {"role": "user_message", "content": "hi"},
                    {"role": "debug", "content": "latency 30ms"},
                    {"role": "bot_message", "content": "hello"},
                ]
            }
        ),
        "a.json",
        options,
    )
    assert [(m.role, m.content) for m in c.messages] == [("user", "hi"), ("assistant", "hello")]


def test_fields_are_configurable_for_other_bots():
    fields = Options(
        id_fields=("conv.uuid",),
        messages_fields=("data.turns",),
        role_keys=("who.role",),
        content_keys=("payload.utterance",),
    )
    c = parse(
        doc(
            {
                "conv": {"uuid": "u-1"},
                "data": {
                    "turns": [
                        {"who": {"role": "Human"}, "payload": {"utterance": "hi"}},
                        {"who": {"role": "bot"}, "payload": {"utterance": "yo"}},
                    ]
                },
            }
        ),
        "x.json",
        fields,
    )
    assert c.thread_id == "u-1"
    assert [(m.role, m.content) for m in c.messages] == [("user", "hi"), ("assistant", "yo")]


def test_feedback_given_again_with_a_new_time_is_not_a_change():
    def rated(at: str):
        messages = [
            TUTORIAL["messages"][0],
            {**TUTORIAL["messages"][1], "feedback": {"score": 1, "comment": "good", "at": at}},
        ]
        return parse(doc({**TUTORIAL, "messages": messages}), "a.json")

    assert rated("2026-11-24T10:00:00Z").feedback_key == rated("2026-11-25T09:00:00Z").feedback_key


@given(
    st.dictionaries(
        st.sampled_from(
            ["role", "content", "model", "feedback", "id", "timestamp", "provider", "name"]
        ),
        st.one_of(
            st.sampled_from(["user", "assistant", "system", "Human", "gpt", "", " x "]),
            st.text(max_size=20),
            st.none(),
            st.integers(),
            st.dictionaries(st.sampled_from(["score", "comment", "at"]), st.integers() | st.text()),
        ),
    )
)
def test_the_fast_path_for_plain_messages_reads_exactly_as_the_full_path(item):
    from labelsync.readers import messages as family

    def read(fast: bool):
        context = family._Context(Options())
        try:
            return family._messages(item, "messages[0]", context, fast=fast), context.warnings
        except InvalidConversation as invalid:
            return invalid.reason, []

    assert read(fast=True) == read(fast=False)
