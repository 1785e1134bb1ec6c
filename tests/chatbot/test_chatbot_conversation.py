"""labelsync_chatbot/conversation.py: what gets recorded, and its shape in the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatbot_contract import assert_follows_contract

from labelsync_chatbot.conversation import (
    Conversation,
    add_assistant_message,
    add_user_message,
    end,
    from_contract,
    provider_messages,
    set_feedback,
    to_contract,
)

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def chat(turns: int = 2) -> Conversation:
    conv = Conversation(thread_id="thread-1", session_id="session-1", user="alice")
    for i in range(turns):
        add_user_message(conv, f"u{i}", f"question {i}", T0 + timedelta(seconds=2 * i))
        add_assistant_message(
            conv, f"a{i}", f"answer {i}", T0 + timedelta(seconds=2 * i + 1),
            model="llama3.2", provider="ollama",
        )
    return conv


def test_file_carries_every_contract_field():
    data = to_contract(chat(2), T0 + timedelta(minutes=1))
    assert_follows_contract(data)
    assert data["thread_id"] == "thread-1"
    assert data["session_id"] == "session-1"
    assert (data["model"], data["provider"]) == ("llama3.2", "ollama")
    assert data["timestamp"] == "2025-05-01T12:01:00Z"
    assert data["turn_count"] == 2
    assert data["ended"] is False
    assert data["user"] == "alice"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "question 0"), ("assistant", "answer 0"),
        ("user", "question 1"), ("assistant", "answer 1"),
    ]
    assert data["messages"][1]["timestamp"] == "2025-05-01T12:00:01Z"


def test_no_user_field_without_login():
    conv = chat(1)
    conv.user = None
    assert "user" not in to_contract(conv, T0)


def test_feedback_lands_on_the_rated_message_only():
    conv = chat(2)
    assert set_feedback(conv, "a1", 0, "wrong year")
    assert set_feedback(conv, "a0", 1, "")
    messages = to_contract(conv, T0)["messages"]
    assert messages[3]["feedback"] == {"score": 0, "comment": "wrong year"}
    assert messages[1]["feedback"] == {"score": 1, "comment": None}
    assert "feedback" not in messages[0] and "feedback" not in messages[2]
    assert_follows_contract(to_contract(conv, T0))


def test_feedback_on_an_unrecorded_message_changes_nothing():
    conv = chat(1)
    before = to_contract(conv, T0)
    assert not set_feedback(conv, "error-notice", 1, None)
    assert to_contract(conv, T0) == before


def test_editing_a_user_message_forks_the_conversation_there():
    conv = chat(2)
    add_user_message(conv, "u0", "question 0, rephrased", T0 + timedelta(minutes=5))
    assert [(m.id, m.content) for m in conv.messages] == [("u0", "question 0, rephrased")]
    assert conv.turn_count == 1


def test_ending_and_speaking_again_reopens():
    conv = chat(1)
    end(conv)
    assert to_contract(conv, T0)["ended"] is True
    add_user_message(conv, "u9", "one more thing", T0)
    assert to_contract(conv, T0)["ended"] is False


def test_history_for_the_model_starts_with_the_system_prompt():
    history = provider_messages(chat(1), "Be brief.")
    assert history == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question 0"},
        {"role": "assistant", "content": "answer 0"},
    ]


def test_a_resumed_conversation_continues_from_its_file():
    conv = chat(2)
    set_feedback(conv, "a0", 1, "nice")
    end(conv)
    written = to_contract(conv, T0)
    resumed = from_contract(written, session_id="session-2")
    assert resumed.thread_id == "thread-1" and resumed.session_id == "session-2"
    assert resumed.ended is False
    add_user_message(resumed, "u2", "question 2", T0 + timedelta(minutes=9))
    add_assistant_message(
        resumed, "a2", "answer 2", T0 + timedelta(minutes=9), model="llama3.2", provider="ollama"
    )
    again = to_contract(resumed, T0)
    # The old turns are unchanged, so the daemon sees exactly two new messages.
    assert again["messages"][:4] == written["messages"]
    assert again["turn_count"] == 3
    assert_follows_contract(again)
