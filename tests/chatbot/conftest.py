"""Fixtures for the chatbot tests.

`tests/support` is put on sys.path and imported as plain modules: the venv has a
top-level `tests` package (shipped by literalai, a Chainlit dependency) that
shadows this repository's `tests/` namespace, so `tests.support...` does not import.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Importing chainlit writes `.chainlit/` and `.files/` into its app root (default:
# the current directory): keep them out of the checkout.
os.environ["CHAINLIT_APP_ROOT"] = tempfile.mkdtemp(prefix="labelsync-chainlit-root-")

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from chatbot_e2e import (  # noqa: E402
    GREETING,
    ChatbotApp,
    screenshot,
    send,
    start_chatbot,
    stop_chatbot,
    wait_for_reply,
)
from ollama_stub import OllamaStub  # noqa: E402

from tests.support.browser import chromium  # noqa: E402


@pytest.fixture
def ollama_stub() -> Iterator[OllamaStub]:
    with OllamaStub(models=["stub-llama:latest", "tiny:1b"]) as stub:
        yield stub


@pytest.fixture
def chatbot_app(tmp_path, ollama_stub) -> Iterator[ChatbotApp]:
    app = start_chatbot(tmp_path, ollama_stub.host)
    yield app
    stop_chatbot(app)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = chromium(p)
        yield instance
        instance.close()


@pytest.fixture
def chat_page(browser, chatbot_app):
    page = browser.new_page(viewport={"width": 1100, "height": 1300})
    page.goto(chatbot_app.url)
    page.wait_for_selector("#chat-input")
    # The greeting arrives once on_chat_start has run: a user would wait for it too.
    page.get_by_text(GREETING).wait_for()
    yield page
    page.close()


@pytest.fixture
def two_turn_conversation_file(chat_page, chatbot_app) -> Path:
    """Chat two turns in the browser with the real app; return the conversation file
    it wrote. Later tests can hand this path to `labelsync backfill`."""
    send(chat_page, "What is Label Studio?")
    wait_for_reply(chat_page, "You said: What is Label Studio?")
    send(chat_page, "And what does labelsync add?")
    wait_for_reply(chat_page, "You said: And what does labelsync add?")
    # The file is written right after the reply is sent: wait until it holds both turns.
    deadline = time.monotonic() + 30
    while True:
        files = chatbot_app.conversation_files()
        if files:
            data = json.loads(files[0].read_text())
            if data.get("turn_count") == 2 and len(data["messages"]) == 4:
                break
        if time.monotonic() > deadline:
            break  # the test's assertions say what is missing
        time.sleep(0.1)
    # Chainlit scrolls the latest question to the top; scroll back to show the chat.
    chat_page.mouse.move(550, 400)
    chat_page.mouse.wheel(0, -20000)
    chat_page.get_by_text(GREETING).wait_for()
    screenshot(chat_page, "chat.png")
    assert len(files) == 1, files
    return files[0]
