"""labelsync_chatbot/datalayer.py: Chainlit's SQLAlchemy data layer really works on SQLite."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from chainlit.context import init_http_context
from chainlit.types import Feedback
from chainlit.user import User

from labelsync_chatbot.datalayer import make_data_layer, sqlite_path


def test_sqlite_url_to_path(tmp_path):
    assert sqlite_path(f"sqlite+aiosqlite:///{tmp_path}/c.db") == tmp_path / "c.db"
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u@h/db") is None


def test_threads_steps_and_feedback_round_trip(tmp_path):
    """What resume and the feedback buttons need from the data layer."""
    url = f"sqlite+aiosqlite:///{tmp_path}/data/chainlit.sqlite3"

    async def scenario():
        layer = make_data_layer(url)
        user = await layer.create_user(User(identifier="alice"))
        assert user is not None
        await layer.update_thread("t1", name="hello", user_id=user.id)
        init_http_context(thread_id="t1", user=user)  # steps are written within a chat
        turns = [("s1", "user_message", "hi"), ("s2", "assistant_message", "yo")]
        for step_id, kind, text in turns:
            await layer.create_step({
                "id": step_id, "threadId": "t1", "name": kind, "type": kind,
                "output": text, "streaming": False, "createdAt": "2025-05-01T12:00:00Z",
                "metadata": {"labelsync": "recorded"},
            })
        await layer.upsert_feedback(Feedback(forId="s2", value=0, threadId="t1", comment="meh"))
        thread = await layer.get_thread("t1")
        await layer.engine.dispose()
        return thread

    thread = asyncio.run(scenario())
    assert thread is not None and thread["userIdentifier"] == "alice"
    steps = {s["id"]: s for s in thread["steps"]}
    assert steps["s1"]["output"] == "hi"
    assert steps["s2"]["feedback"]["value"] == 0
    assert steps["s2"]["feedback"]["comment"] == "meh"


def test_a_thread_read_back_gives_the_recorded_conversation_only(tmp_path):
    """Resume without the file: what the data layer really returns (metadata comes
    back as a JSON string) rebuilds the conversation, minus failed attempts."""
    from datetime import UTC, datetime

    from labelsync_chatbot.thread_history import conversation_from_thread, feedback_targets

    url = f"sqlite+aiosqlite:///{tmp_path}/chainlit.sqlite3"
    recorded = {"labelsync": "recorded"}
    steps = [
        ("u1", "user_message", None, "hello", recorded, False),
        ("a1", "assistant_message", "run1", "hi there", {
            **recorded, "model": "tiny:1b", "provider": "ollama"}, False),
        ("u2", "user_message", None, "are you there?", {}, False),  # its reply failed
        ("e2", "assistant_message", None, "The assistant is unavailable", {}, True),
        ("u3", "user_message", None, "are you there?", recorded, False),
        ("a3", "assistant_message", "run3", "yes", {
            **recorded, "model": "tiny:1b", "provider": "ollama"}, False),
    ]

    async def scenario():
        layer = make_data_layer(url)
        user = await layer.create_user(User(identifier="alice"))
        assert user is not None
        await layer.update_thread("t1", name="hello", user_id=user.id)
        init_http_context(thread_id="t1", user=user)
        for second, (step_id, kind, parent, text, metadata, is_error) in enumerate(steps):
            await layer.create_step({
                "id": step_id, "threadId": "t1", "name": kind, "type": kind,
                "parentId": parent, "output": text, "streaming": False, "isError": is_error,
                "createdAt": f"2025-05-01T12:00:0{second}Z", "metadata": metadata,
            })
        thread = await layer.get_thread("t1")
        await layer.engine.dispose()
        return thread

    thread = asyncio.run(scenario())
    conv = conversation_from_thread(
        thread, session_id="s2", system_prompt="Be brief.", now=datetime.now(UTC))
    assert [(m.role, m.content, m.model) for m in conv.messages] == [
        ("user", "hello", None), ("assistant", "hi there", "tiny:1b"),
        ("user", "are you there?", None), ("assistant", "yes", "tiny:1b"),
    ]
    assert conv.started_at == "2025-05-01T12:00:00Z"
    assert feedback_targets(thread) == {"run1": "a1", "run3": "a3"}
