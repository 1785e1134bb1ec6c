"""Helpers to run the real chatbot and drive it in headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STUB_MODEL = "stub-llama:latest"
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
    page.fill("#chat-input", text)
    page.click("#chat-submit")


def wait_for_reply(page, text: str):
    reply = page.locator('[data-step-type="assistant_message"]').filter(has_text=text)
    reply.wait_for()
    return reply
