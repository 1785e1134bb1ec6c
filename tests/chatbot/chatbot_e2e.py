"""Helpers to run the real chatbot and drive it in headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.browser import ARTIFACTS

REPO = Path(__file__).resolve().parents[2]
STUB_MODEL = "stub-llama:latest"
GREETING = "Hello! Replies come from"
RESUMED = "Welcome back"
# Login and Chainlit's data layer: what resume and the thumbs need.
AUTH_SECRET = "test-secret-" + "x" * 52
# Settings that would change what the app does if inherited from the outer shell.
_INHERITED_SETTINGS = (
    "CI", "DATABASE_URL", "LITERAL_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
    "CHAINLIT_AUTH_SECRET", "LABELSYNC_CHATBOT_DATABASE_URL", "LABELSYNC_CHATBOT_USERS",
    "LABELSYNC_CHATBOT_DEFAULT_MODEL", "LABELSYNC_WATCH_DIR", "OLLAMA_HOST",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ChatbotApp:
    url: str
    watch_dir: Path
    log: Path
    process: subprocess.Popen[bytes]

    def conversation_files(self) -> list[Path]:
        return sorted(self.watch_dir.glob("conversation_*.json"))


def start_chatbot(tmp: Path, ollama_host: str, **extra_env: str) -> ChatbotApp:
    """`python -m labelsync_chatbot` (the console entry point's code) on loopback,
    with Chainlit's files in a temp dir and CI removed from its environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_SETTINGS}
    env |= {
        "OLLAMA_HOST": ollama_host,
        "LABELSYNC_WATCH_DIR": str(tmp / "conversations"),
        "LABELSYNC_CHATBOT_DEFAULT_MODEL": f"ollama:{STUB_MODEL}",
        "CHAINLIT_APP_ROOT": str(tmp / "chainlit-root"),
        **extra_env,
    }
    log = tmp / "chatbot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "labelsync_chatbot", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    app = ChatbotApp(f"http://127.0.0.1:{port}", tmp / "conversations", log, process)
    # Chainlit logs "available at" before it binds: poll until it answers.
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"chatbot exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(app.url, timeout=2) as response:
                if response.status == 200:
                    return app
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            stop_chatbot(app)
            raise RuntimeError(f"chatbot did not answer at {app.url}:\n{log.read_text()}")
        time.sleep(0.2)


def stop_chatbot(app: ChatbotApp) -> None:
    app.process.terminate()
    try:
        app.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait()


def send(page, text: str) -> None:
    """Type and send, as a user would: once the previous run is over. With a data
    layer, Chainlit moves to /thread/<id> after the first reply and the composer
    can lose what was just typed; a user then types it again, and so do we."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector("#chat-submit")  # not the stop button: no run is going
    for _ in range(3):
        page.fill("#chat-input", text)
        try:
            page.click("#chat-submit", timeout=10_000)
            return
        except PlaywrightTimeout:
            if page.input_value("#chat-input") == text:
                raise  # the text is there and still cannot be sent: a real problem
    raise AssertionError(f"the composer kept losing {text!r}")


def wait_for_reply(page, text: str):
    reply = page.locator('[data-step-type="assistant_message"]').filter(has_text=text)
    reply.wait_for()
    return reply


def login_env(tmp: Path, users: str = "alice:wonderland") -> dict[str, str]:
    return {
        "LABELSYNC_CHATBOT_USERS": users,
        "CHAINLIT_AUTH_SECRET": AUTH_SECRET,
        "LABELSYNC_CHATBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/chainlit.sqlite3",
    }


def sign_in(page, user: str, password: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign In").click()


def read_when(app: ChatbotApp, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
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


def chat_turns(page, texts: list[str]) -> None:
    for text in texts:
        send(page, text)
        wait_for_reply(page, f"You said: {text}")
    page.wait_for_selector("#chat-submit")  # the run is over


def pick_model(page, label: str) -> list[str]:
    """Pick a model in the chat settings, as a user does; return what the picker offered."""
    page.locator("#chat-settings-open-modal").click()
    page.get_by_role("combobox").click()
    offered = page.get_by_role("option").all_inner_texts()
    page.get_by_role("option", name=label).click()
    page.get_by_role("button", name="Confirm").click()
    return offered


def screenshot(page, name: str) -> Path:
    """Save what the user sees now under tests/artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Let the last update paint before taking the picture.
    page.wait_for_function("() => new Promise(r => requestAnimationFrame(() => r(true)))")
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path
