"""End to end: the real Chainlit app in headless Chromium, Ollama played by the stub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from chatbot_contract import assert_follows_contract, labelsync_validate
from chatbot_e2e import ChatbotApp, free_port, send, start_chatbot, stop_chatbot, wait_for_reply

pytestmark = pytest.mark.browser


def read_when(app: ChatbotApp, done) -> dict | None:
    """The conversation file once `done(data)` holds (it is written just after the
    reply shows); the last state seen otherwise, for the assertion to report."""
    deadline = time.monotonic() + 30
    data = None
    while time.monotonic() < deadline:
        files = app.conversation_files()
        if files:
            data = json.loads(files[0].read_text())
            if done(data):
                break
        time.sleep(0.1)
    return data


def test_two_turns_are_written_to_one_conversation_file(two_turn_conversation_file: Path):
    data = json.loads(two_turn_conversation_file.read_text())
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "What is Label Studio?"),
        ("assistant", "You said: What is Label Studio?"),
        ("user", "And what does labelsync add?"),
        ("assistant", "You said: And what does labelsync add?"),
    ]
    assert data["turn_count"] == 2
    assert (data["provider"], data["model"]) == ("ollama", "stub-llama:latest")
    assert data["ended"] is False
    assert two_turn_conversation_file.name == f"conversation_{data['thread_id']}.json"
    assert_follows_contract(data)
    result = labelsync_validate(two_turn_conversation_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chat_reaches_label_studio_through_labelsync_backfill(
        two_turn_conversation_file: Path, ls_project, tmp_path: Path):
    """The whole product: chat in the browser, file on disk, task in Label Studio."""
    import os
    import subprocess
    import sys

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))}
    env |= {"LABEL_STUDIO_URL": ls_project.url, "LABEL_STUDIO_API_KEY": ls_project.token,
            "LABEL_STUDIO_PROJECT_ID": str(ls_project.id),
            "LABELSYNC_STATE_DIR": str(tmp_path / "labelsync-state")}
    result = subprocess.run(
        [sys.executable, "-m", "labelsync.cli", "backfill", str(two_turn_conversation_file.parent)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = httpx.get(f"{ls_project.url}/api/tasks",
                      params={"project": ls_project.id, "fields": "task_only"},
                      headers={"Authorization": f"Token {ls_project.token}"}, timeout=60).json()
    (task,) = tasks["tasks"] if isinstance(tasks, dict) else tasks
    written = json.loads(two_turn_conversation_file.read_text())
    assert task["data"]["thread_id"] == written["thread_id"]
    assert task["data"]["chat"] == [
        {"role": "user", "content": "What is Label Studio?"},
        {"role": "assistant", "content": "You said: What is Label Studio?"},
        {"role": "user", "content": "And what does labelsync add?"},
        {"role": "assistant", "content": "You said: And what does labelsync add?"},
    ]
    assert task["data"]["model"] == "stub-llama:latest" and task["data"]["turn_count"] == 2


def test_end_conversation_button_marks_the_file_ended(chat_page, chatbot_app):
    send(chat_page, "hello")
    wait_for_reply(chat_page, "You said: hello")
    chat_page.get_by_role("button", name="End conversation").click()
    chat_page.get_by_text("Conversation ended and saved").wait_for()
    data = read_when(chatbot_app, lambda d: d["ended"])
    assert data is not None and data["ended"] is True
    assert data["turn_count"] == 1


def test_error_mid_reply_is_shown_and_not_saved_as_a_reply(chat_page, chatbot_app, ollama_stub):
    send(chat_page, "first question")
    wait_for_reply(chat_page, "You said: first question")
    before = read_when(chatbot_app, lambda d: d["turn_count"] == 1)

    ollama_stub.fail_after(2, "error")
    send(chat_page, "second question")
    chat_page.get_by_text("The reply was cut off").wait_for()
    chat_page.get_by_text("llama runner process has terminated").first.wait_for()
    # The app keeps running: the next message gets a whole reply.
    send(chat_page, "third question")
    wait_for_reply(chat_page, "You said: third question")
    after = read_when(chatbot_app, lambda d: d["turn_count"] == 3)

    assert before is not None and after is not None
    assert_follows_contract(after)
    assistant_replies = [m["content"] for m in after["messages"] if m["role"] == "assistant"]
    # The half reply to the second question ("You said:") never became a message.
    assert assistant_replies == ["You said: first question", "You said: third question"]
    assert after["messages"][: len(before["messages"])] == before["messages"]


def test_ollama_not_running_is_explained_in_the_chat(browser, tmp_path):
    dead_host = f"http://127.0.0.1:{free_port()}"
    app = start_chatbot(tmp_path, dead_host)
    try:
        page = browser.new_page()
        page.goto(app.url)
        page.get_by_text("Ollama is not answering").first.wait_for()
        send(page, "anyone there?")
        page.locator('[data-step-type="assistant_message"]').filter(
            has_text="ollama serve"
        ).nth(1).wait_for()
        assert app.process.poll() is None  # still running
        assert app.conversation_files() == []  # nothing complete to save
        page.close()
    finally:
        stop_chatbot(app)


def test_with_login_and_sqlite_feedback_and_resume_continue_the_same_file(
    browser, tmp_path, ollama_stub
):
    app = start_chatbot(
        tmp_path,
        ollama_stub.host,
        LABELSYNC_CHATBOT_USERS="alice:wonderland",
        CHAINLIT_AUTH_SECRET="test-secret-" + "x" * 52,
        LABELSYNC_CHATBOT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/chainlit.sqlite3",
    )
    try:
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        page.goto(app.url)
        page.fill("#email", "alice")
        page.fill("#password", "wonderland")
        page.get_by_role("button", name="Sign In").click()
        page.get_by_text("Model:").wait_for()
        send(page, "first question")
        reply = wait_for_reply(page, "You said: first question")
        page.wait_for_url("**/thread/*")  # Chainlit moves there once the thread is stored
        thread_url = page.url
        page.wait_for_selector("#chat-submit")  # the run is over: its feedback buttons are live

        reply.locator(".negative-feedback-off").click()
        dialog = page.get_by_role("dialog")
        dialog.locator("textarea").fill("too short")
        dialog.get_by_role("button", name="Submit feedback").click()
        rated = read_when(
            app, lambda d: any("feedback" in m for m in d["messages"])
        )
        assert rated is not None
        assert rated["messages"][1]["feedback"] == {"score": 0, "comment": "too short"}
        assert rated["user"] == "alice"

        # Come back later in a new tab and continue the thread.
        page.close()
        page = context.new_page()
        page.goto(app.url)
        page.get_by_text("Model:").wait_for()
        page.goto(thread_url)
        wait_for_reply(page, "You said: first question")  # the history is back
        page.wait_for_selector("#chat-input")
        send(page, "second question")
        wait_for_reply(page, "You said: second question")
        resumed = read_when(app, lambda d: d["turn_count"] == 2)

        assert len(app.conversation_files()) == 1
        assert resumed is not None and resumed["thread_id"] == rated["thread_id"]
        assert resumed["messages"][:2] == rated["messages"]
        assert [m["content"] for m in resumed["messages"][2:]] == [
            "second question", "You said: second question",
        ]
        assert_follows_contract(resumed)
        context.close()
    finally:
        stop_chatbot(app)
