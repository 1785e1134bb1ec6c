"""End to end: the real Chainlit app in headless Chromium, Ollama played by the stub.

Each test checks what the person chatting sees and what the file then holds;
screenshots of each state go to tests/artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chatbot_contract import assert_follows_contract, labelsync_validate
from chatbot_e2e import (
    GREETING,
    RESUMED,
    STUB_MODEL,
    chat_turns,
    free_port,
    login_env,
    pick_model,
    read_when,
    screenshot,
    send,
    sign_in,
    start_chatbot,
    stop_chatbot,
    wait_for_reply,
)
from ollama_stub import OllamaStub
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# What only the operator should read: a host, a command, a setting, a path.
OPERATOR_WORDS = ("ollama serve", "ollama pull", "OLLAMA_HOST", "127.0.0.1", "LABELSYNC_", "/tmp/")


def chat_text(page) -> str:
    return page.locator("#root").inner_text()


def assert_no_operator_words(page) -> None:
    text = chat_text(page)
    assert not [word for word in OPERATOR_WORDS if word in text], text


def replies_in(data: dict) -> list[tuple[str, str, str]]:
    return [
        (m["content"], m["model"], m["provider"])
        for m in data["messages"] if m["role"] == "assistant"
    ]


def test_two_turns_are_written_to_one_conversation_file(two_turn_conversation_file: Path):
    data = json.loads(two_turn_conversation_file.read_text())
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "What is Label Studio?"),
        ("assistant", "You said: What is Label Studio?"),
        ("user", "And what does labelsync add?"),
        ("assistant", "You said: And what does labelsync add?"),
    ]
    assert replies_in(data) == [
        ("You said: What is Label Studio?", STUB_MODEL, "ollama"),
        ("You said: And what does labelsync add?", STUB_MODEL, "ollama"),
    ]
    assert data["turn_count"] == 2
    assert (data["provider"], data["model"]) == ("ollama", STUB_MODEL)
    assert data["system_prompt"] == "You are a helpful, concise assistant."
    assert data["started_at"] == data["messages"][0]["timestamp"]
    assert data["sessions"] == [data["session_id"]]
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
    assert [(m["role"], m["content"]) for m in task["data"]["chat"]] == [
        ("user", "What is Label Studio?"),
        ("assistant", "You said: What is Label Studio?"),
        ("user", "And what does labelsync add?"),
        ("assistant", "You said: And what does labelsync add?"),
    ]
    assert task["data"]["model"] == STUB_MODEL and task["data"]["turn_count"] == 2


def test_end_conversation_is_at_hand_after_ten_turns_and_its_confirmation_is_seen(
        chat_page, chatbot_app):
    chat_turns(chat_page, [f"question number {i}" for i in range(1, 11)])
    end_button = chat_page.get_by_role("button", name="End conversation")
    # One End button, under the latest reply, where the user is looking.
    expect(end_button).to_have_count(1)
    expect(end_button).to_be_in_viewport()
    latest = chat_page.locator('[data-step-type="assistant_message"]').filter(
        has_text="You said: question number 10")
    expect(latest.get_by_role("button", name="End conversation")).to_have_count(1)
    screenshot(chat_page, "end-after-ten-turns.png")

    end_button.click()
    confirmation = chat_page.get_by_text("Conversation ended and saved")
    expect(confirmation).to_be_in_viewport()
    expect(chat_page.get_by_role("button", name="End conversation")).to_have_count(0)
    screenshot(chat_page, "ended.png")
    data = read_when(chatbot_app, lambda d: d["ended"])
    assert data is not None and data["ended"] is True
    assert data["turn_count"] == 10
    assert_follows_contract(data)


def test_error_mid_reply_is_explained_and_the_retry_is_recorded_once(
        chat_page, chatbot_app, ollama_stub):
    chat_turns(chat_page, ["first question"])
    before = read_when(chatbot_app, lambda d: d["turn_count"] == 1)

    ollama_stub.fail_after(2, "error")
    send(chat_page, "second question")
    chat_page.get_by_text("The reply stopped partway through, so it was not kept.").wait_for()
    chat_page.get_by_text("[reply interrupted]").wait_for()  # what the user saw stays marked
    expect(chat_page.get_by_role("button", name="End conversation")).to_be_in_viewport()
    screenshot(chat_page, "error-mid-reply.png")
    assert_no_operator_words(chat_page)
    # The operator's log says what happened.
    assert "llama runner process has terminated" in chatbot_app.log.read_text()
    # The file is as the user last saw it succeed.
    assert read_when(chatbot_app, lambda d: d["turn_count"] == 1) == before

    # The user sends the same message again, and it works this time.
    chat_turns(chat_page, ["second question"])
    after = read_when(chatbot_app, lambda d: d["turn_count"] == 2)
    assert before is not None and after is not None
    assert_follows_contract(after)
    assert [(m["role"], m["content"]) for m in after["messages"]] == [
        ("user", "first question"), ("assistant", "You said: first question"),
        ("user", "second question"), ("assistant", "You said: second question"),
    ]
    assert after["messages"][:2] == before["messages"]


def test_ollama_down_then_back_the_retried_message_is_recorded_once(browser, tmp_path):
    """The issue's report: with Ollama down the user is asked to try again; doing so
    once it is back must give one user message in the file, not two."""
    port = free_port()
    app = start_chatbot(tmp_path, f"http://127.0.0.1:{port}")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(app.url)
        page.get_by_text(GREETING).wait_for()
        page.get_by_text("The assistant is unavailable right now").first.wait_for()
        send(page, "Hello again, are you there?")
        expect(page.get_by_text("The assistant is unavailable right now")).to_have_count(2)
        screenshot(page, "ollama-down.png")
        assert_no_operator_words(page)
        log = app.log.read_text()
        assert "ollama serve" in log and f"127.0.0.1:{port}" in log  # for the operator
        assert app.process.poll() is None  # still running
        assert app.conversation_files() == []  # nothing complete to save

        with OllamaStub(models=[STUB_MODEL], port=port):
            send(page, "Hello again, are you there?")
            wait_for_reply(page, "You said: Hello again, are you there?")
            data = read_when(app, lambda d: d["turn_count"] >= 1)
        assert data is not None
        assert [(m["role"], m["content"]) for m in data["messages"]] == [
            ("user", "Hello again, are you there?"),
            ("assistant", "You said: Hello again, are you there?"),
        ]
        assert data["turn_count"] == 1
        assert_follows_contract(data)
    finally:
        page.close()
        stop_chatbot(app)


def test_one_entry_per_model_and_each_reply_keeps_the_model_that_wrote_it(
        browser, tmp_path, ollama_stub, ls_project):
    # Configured without a tag, as people write it; Ollama lists it as ":latest".
    app = start_chatbot(
        tmp_path, ollama_stub.host, LABELSYNC_CHATBOT_DEFAULT_MODEL="ollama:stub-llama")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(app.url)
        page.get_by_text(GREETING).wait_for()
        chat_turns(page, ["which model are you?"])

        offered = pick_model(page, "tiny:1b (ollama)")
        assert offered == ["stub-llama:latest (ollama)", "tiny:1b (ollama)"]
        notice = page.get_by_text("Model changed: the next replies come from")
        expect(notice).to_be_in_viewport()
        expect(notice).to_contain_text("tiny:1b")
        screenshot(page, "model-changed.png")
        chat_turns(page, ["and now?"])
        data = read_when(app, lambda d: d["turn_count"] == 2)

        assert data is not None
        assert replies_in(data) == [
            ("You said: which model are you?", "stub-llama:latest", "ollama"),
            ("You said: and now?", "tiny:1b", "ollama"),
        ]
        assert (data["model"], data["provider"]) == ("tiny:1b", "ollama")  # the latest reply's
        assert_follows_contract(data)
        result = labelsync_validate(app.conversation_files()[0])
        assert result.returncode == 0, result.stdout + result.stderr

        # Picking the model already in use says nothing.
        pick_model(page, "tiny:1b (ollama)")
        chat_turns(page, ["still there?"])
        expect(page.get_by_text("Model changed")).to_have_count(1)
        read_when(app, lambda d: d["turn_count"] == 3)

        # In Label Studio, after a sync, each reply says which model wrote it.
        task = synced_task(app.conversation_files()[0], ls_project, tmp_path)
        replies = [m for m in task["data"]["chat"] if m["role"] == "assistant"]
        assert [m["model"] for m in replies] == ["stub-llama:latest", "tiny:1b", "tiny:1b"]
        assert "stub-llama:latest" in replies[0]["html"] and "tiny:1b" in replies[1]["html"]
    finally:
        page.close()
        stop_chatbot(app)


def synced_task(conversation_file: Path, ls_project, tmp_path: Path) -> dict:
    """`labelsync backfill` of the chatbot's file; the one task it made."""
    import os
    import subprocess
    import sys

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))}
    env |= {"LABEL_STUDIO_URL": ls_project.url, "LABEL_STUDIO_API_KEY": ls_project.token,
            "LABEL_STUDIO_PROJECT_ID": str(ls_project.id),
            "LABELSYNC_STATE_DIR": str(tmp_path / "labelsync-sync-state")}
    result = subprocess.run(
        [sys.executable, "-m", "labelsync.cli", "backfill", str(conversation_file.parent)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = httpx.get(f"{ls_project.url}/api/tasks/",
                      params={"project": ls_project.id, "fields": "task_only"},
                      headers={"Authorization": f"Token {ls_project.token}"}, timeout=60).json()
    (task,) = tasks["tasks"] if isinstance(tasks, dict) else tasks
    return task


def test_the_readme_explains_this_chat_to_its_users(chat_page):
    chat_page.get_by_role("button", name="Readme").click()
    readme = chat_page.get_by_role("dialog")
    expect(readme).to_contain_text("About this chat")
    expect(readme).to_contain_text("Your conversation is saved")
    expect(readme).not_to_contain_text("Chainlit")
    expect(readme).not_to_contain_text("Developer")
    screenshot(chat_page, "readme.png")


# --- with login and Chainlit's data layer (SQLite) ------------------------------


@pytest.fixture
def login_app(tmp_path, ollama_stub):
    app = start_chatbot(tmp_path, ollama_stub.host, **login_env(tmp_path))
    yield app
    stop_chatbot(app)


@pytest.fixture
def signed_in(browser, login_app):
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.goto(login_app.url)
    sign_in(page, "alice", "wonderland")
    page.get_by_text(GREETING).wait_for()
    yield context, page
    context.close()


def test_login_asks_for_a_user_name_and_a_wrong_password_is_said_in_words(browser, login_app):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(login_app.url)
        expect(page.get_by_label("User name")).to_be_visible()
        expect(page.get_by_text("Email address")).to_have_count(0)
        sign_in(page, "alice", "not-the-password")
        # In the form, and in Chainlit's own pop-up ("Unauthorized: ...").
        expect(page.get_by_text("Wrong user name or password.")).to_have_count(2)
        expect(page.get_by_text("credentialssignin")).to_have_count(0)
        screenshot(page, "login-wrong-password.png")
        sign_in(page, "alice", "wonderland")
        page.get_by_text(GREETING).wait_for()
    finally:
        page.close()


def test_feedback_is_offered_on_saved_replies_only_and_saved_with_its_time(
        signed_in, login_app, ollama_stub):
    _, page = signed_in
    chat_turns(page, ["first question"])
    ollama_stub.fail_after(2, "error")
    send(page, "second question")
    error = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="The reply stopped partway through")
    # The End button arrives after the notice: once it is there, so would thumbs be.
    expect(error.get_by_role("button", name="End conversation")).to_have_count(1)
    page.wait_for_selector("#chat-submit")
    expect(error.locator(".positive-feedback-off")).to_have_count(0)
    interrupted = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="[reply interrupted]")
    expect(interrupted.locator(".positive-feedback-off")).to_have_count(0)
    # Only the one complete reply can be rated.
    expect(page.locator(".positive-feedback-off")).to_have_count(1)
    page.mouse.move(550, 400)
    page.mouse.wheel(0, -20000)  # Chainlit scrolled the question to the top: show it all
    expect(page.get_by_text(GREETING)).to_be_in_viewport()
    screenshot(page, "feedback-only-on-saved-replies.png")

    reply = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="You said: first question")
    reply.locator(".negative-feedback-off").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("textarea").fill("too short")
    dialog.get_by_role("button", name="Submit feedback").click()
    rated = read_when(login_app, lambda d: any("feedback" in m for m in d["messages"]))
    assert rated is not None
    feedback = rated["messages"][1]["feedback"]
    assert (feedback["score"], feedback["comment"]) == (0, "too short")
    assert rated["messages"][1]["timestamp"] < feedback["at"] <= rated["timestamp"]
    assert rated["turn_count"] == 1 and rated["user"] == "alice"
    assert_follows_contract(rated)


def test_a_reopened_thread_shows_one_notice_keeps_end_at_hand_and_continues_the_file(
        signed_in, login_app):
    context, page = signed_in
    chat_turns(page, [f"turn {i}" for i in range(1, 7)])
    page.wait_for_url("**/thread/*")  # Chainlit moves there once the thread is stored
    thread_url = page.url
    first = read_when(login_app, lambda d: d["turn_count"] == 6)
    assert first is not None

    # Come back later, twice, each time in a new tab.
    for opening in (1, 2):
        page.close()
        page = context.new_page()
        page.goto(login_app.url)
        page.get_by_text(GREETING).wait_for()
        page.goto(thread_url)
        wait_for_reply(page, "You said: turn 6")  # the history is back
        notice = page.get_by_text(RESUMED)
        expect(notice).to_have_count(1)
        expect(notice).to_be_in_viewport()
        end_button = page.get_by_role("button", name="End conversation")
        expect(end_button).to_have_count(1)
        expect(end_button).to_be_in_viewport()
        screenshot(page, f"resumed-{opening}.png")
    # Nothing of the reopening was kept in the chat's history.
    page.reload()
    wait_for_reply(page, "You said: turn 6")
    page.get_by_text(RESUMED).wait_for()
    expect(page.get_by_text(RESUMED)).to_have_count(1)

    chat_turns(page, ["turn 7"])
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_text("Conversation ended and saved")).to_be_in_viewport()
    screenshot(page, "resumed-and-ended.png")
    resumed = read_when(login_app, lambda d: d["turn_count"] == 7 and d["ended"])

    assert len(login_app.conversation_files()) == 1
    assert resumed is not None and resumed["thread_id"] == first["thread_id"]
    assert resumed["messages"][:12] == first["messages"]
    assert [m["content"] for m in resumed["messages"][12:]] == ["turn 7", "You said: turn 7"]
    assert resumed["session_id"] == first["session_id"]
    # Only the sessions that wrote: the first, and the one that said "turn 7".
    assert len(resumed["sessions"]) == 2 and resumed["sessions"][0] == first["session_id"]
    assert resumed["started_at"] == first["started_at"]
    assert_follows_contract(resumed)
