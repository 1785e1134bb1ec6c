"""labelsync_chatbot/conversation.py: what gets recorded, and its shape in the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatbot_contract import assert_follows_contract

from labelsync_chatbot.conversation import (
    Conversation,
    Said,
    end,
    from_contract,
    history_for,
    record_turn,
    set_feedback,
    to_contract,
)

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
PROMPT = "Be brief."


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def chat(turns: int = 2, model: str = "llama3.2:latest") -> Conversation:
    conv = Conversation(
        thread_id="thread-1", session_id="session-1", user="alice", system_prompt=PROMPT
    )
    for i in range(turns):
        record_turn(
            conv, Said(f"u{i}", f"question {i}", at(2 * i)),
            Said(f"a{i}", f"answer {i}", at(2 * i + 1)), model=model, provider="ollama",
        )
    return conv


def test_file_carries_every_contract_field():
    data = to_contract(chat(2), at(60))
    assert_follows_contract(data)
    assert data["thread_id"] == "thread-1"
    assert (data["session_id"], data["sessions"]) == ("session-1", ["session-1"])
    assert (data["model"], data["provider"]) == ("llama3.2:latest", "ollama")
    assert data["system_prompt"] == PROMPT
    assert data["started_at"] == "2025-05-01T12:00:00Z"
    assert data["timestamp"] == "2025-05-01T12:01:00Z"
    assert data["turn_count"] == 2
    assert data["ended"] is False
    assert data["user"] == "alice"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "question 0"), ("assistant", "answer 0"),
        ("user", "question 1"), ("assistant", "answer 1"),
    ]
    assert data["messages"][1]["timestamp"] == "2025-05-01T12:00:01Z"


def test_each_reply_names_its_model_and_the_top_level_names_the_latest():
    conv = chat(1, model="llama3.2:latest")
    record_turn(
        conv, Said("u1", "and now?", at(10)), Said("a1", "hi", at(11)),
        model="gpt-4o-mini", provider="openai",
    )
    data = to_contract(conv, at(20))
    replies = [m for m in data["messages"] if m["role"] == "assistant"]
    assert [(m["model"], m["provider"]) for m in replies] == [
        ("llama3.2:latest", "ollama"), ("gpt-4o-mini", "openai"),
    ]
    assert all("model" not in m for m in data["messages"] if m["role"] == "user")
    assert (data["model"], data["provider"]) == ("gpt-4o-mini", "openai")
    assert_follows_contract(data)


def test_a_failed_reply_records_nothing_and_the_retry_records_one_user_message():
    """The app asks `history_for` before the reply and `record_turn` only after a
    complete one: a failure in between leaves the conversation as it was."""
    conv = chat(1)
    before = to_contract(conv, T0)
    history = history_for(conv, "u1-first-try", "are you there?")
    assert history[-1] == {"role": "user", "content": "are you there?"}
    # ... the provider fails here; nothing is recorded ...
    assert to_contract(conv, T0) == before
    # The user sends it again: a new message id, one user message in the file.
    record_turn(
        conv, Said("u1-retry", "are you there?", at(30)), Said("a1", "yes", at(31)),
        model="llama3.2:latest", provider="ollama",
    )
    roles = [m["role"] for m in to_contract(conv, T0)["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in conv.messages].count("are you there?") == 1


def test_history_for_the_model_starts_with_the_system_prompt_and_ends_with_the_new_message():
    assert history_for(chat(1), "u1", "next") == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "question 0"},
        {"role": "assistant", "content": "answer 0"},
        {"role": "user", "content": "next"},
    ]


def test_editing_a_user_message_forks_the_conversation_there():
    conv = chat(2)
    # Chainlit resends an edited message with its old id.
    assert history_for(conv, "u0", "question 0, rephrased") == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "question 0, rephrased"},
    ]
    record_turn(
        conv, Said("u0", "question 0, rephrased", at(300)), Said("a9", "answer", at(301)),
        model="llama3.2:latest", provider="ollama",
    )
    assert [(m.id, m.content) for m in conv.messages] == [
        ("u0", "question 0, rephrased"), ("a9", "answer"),
    ]
    assert conv.turn_count == 1


def test_feedback_lands_on_the_rated_message_with_its_time():
    conv = chat(2)
    assert set_feedback(conv, "a1", 0, "wrong year", at(100)) == "recorded"
    assert set_feedback(conv, "a0", 1, "", at(101)) == "recorded"
    messages = to_contract(conv, at(200))["messages"]
    assert messages[3]["feedback"] == {
        "score": 0, "comment": "wrong year", "at": "2025-05-01T12:01:40Z",
    }
    assert messages[1]["feedback"] == {"score": 1, "comment": None, "at": "2025-05-01T12:01:41Z"}
    assert "feedback" not in messages[0] and "feedback" not in messages[2]
    assert_follows_contract(to_contract(conv, T0))


def test_the_same_rating_sent_again_keeps_its_first_time():
    # The daemon compares feedback as content: a new time alone must not make a version.
    conv = chat(1)
    set_feedback(conv, "a0", 0, "meh", at(100))
    assert set_feedback(conv, "a0", 0, "meh", at(500)) == "unchanged"
    assert to_contract(conv, T0)["messages"][1]["feedback"]["at"] == "2025-05-01T12:01:40Z"
    assert set_feedback(conv, "a0", 1, "meh", at(600)) == "recorded"
    assert to_contract(conv, T0)["messages"][1]["feedback"]["at"] == "2025-05-01T12:10:00Z"


def test_feedback_on_an_unrecorded_message_changes_nothing():
    conv = chat(1)
    before = to_contract(conv, T0)
    assert set_feedback(conv, "error-notice", 1, None, T0) == "not recorded"
    assert to_contract(conv, T0) == before


def test_ending_and_speaking_again_reopens():
    conv = chat(1)
    end(conv)
    assert to_contract(conv, T0)["ended"] is True
    record_turn(
        conv, Said("u9", "one more thing", T0), Said("a9", "yes?", T0),
        model="llama3.2:latest", provider="ollama",
    )
    assert to_contract(conv, T0)["ended"] is False


def test_a_resumed_conversation_keeps_its_first_session_and_lists_the_writers():
    conv = chat(2)
    set_feedback(conv, "a0", 1, "nice", at(50))
    end(conv)
    written = to_contract(conv, at(60))
    resumed = from_contract(written, session_id="session-2", system_prompt="changed since")
    assert resumed.thread_id == "thread-1" and resumed.ended is False
    record_turn(
        resumed, Said("u2", "question 2", at(540)), Said("a2", "answer 2", at(541)),
        model="tiny:1b", provider="ollama",
    )
    again = to_contract(resumed, at(600))
    assert (again["session_id"], again["sessions"]) == ("session-1", ["session-1", "session-2"])
    # The conversation keeps the prompt and the start it was written with.
    assert again["system_prompt"] == PROMPT
    assert again["started_at"] == written["started_at"]
    # The old turns are unchanged, so the daemon sees exactly two new messages.
    assert again["messages"][:4] == written["messages"]
    assert again["turn_count"] == 3
    assert_follows_contract(again)

    third = from_contract(again, session_id="session-3", system_prompt=PROMPT)
    assert to_contract(third, T0)["sessions"] == ["session-1", "session-2", "session-3"]


def test_a_file_from_before_per_reply_models_resumes_without_inventing_any():
    old = {
        "contract": "labelsync/1", "thread_id": "t", "session_id": "s1",
        "model": "llama3.2", "provider": "ollama", "timestamp": "2025-05-01T12:05:00Z",
        "messages": [
            {"id": "u0", "role": "user", "content": "q0", "timestamp": "2025-05-01T12:00:00Z"},
            {"id": "a0", "role": "assistant", "content": "r0", "timestamp": "2025-05-01T12:00:01Z"},
            {"id": "u1", "role": "user", "content": "q1", "timestamp": "2025-05-01T12:00:02Z"},
            {"id": "a1", "role": "assistant", "content": "r1", "timestamp": "2025-05-01T12:00:03Z",
             "feedback": {"score": 1, "comment": None}},
        ],
        "turn_count": 2, "ended": True, "metadata": {"thread_id": "t", "app": "labelsync-chatbot"},
    }
    conv = from_contract(old, session_id="s2", system_prompt=PROMPT)
    data = to_contract(conv, T0)
    # The old top-level model named the latest reply only.
    assert "model" not in data["messages"][1]
    assert (data["messages"][3]["model"], data["model"]) == ("llama3.2", "llama3.2")
    # Old feedback has no time and gets none made up.
    assert data["messages"][3]["feedback"] == {"score": 1, "comment": None}
    assert data["started_at"] == "2025-05-01T12:00:00Z"
    assert data["system_prompt"] == PROMPT
    assert (data["session_id"], data["sessions"]) == ("s1", ["s1", "s2"])
    assert_follows_contract(data)
