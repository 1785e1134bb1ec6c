"""`make demo`: labelsync on something real, from a fresh clone, in one command.

A local Label Studio (its own cached virtualenv, data under .demo/), the
evaluation project, sample conversations backfilled, then the daemon watching
data/conversations and the chatbot writing there. Prints where to look; Ctrl-C
stops everything. Run again: the same Label Studio, project and login.

Environment: LABELSYNC_DEMO_PORT (Label Studio, default 8080),
LABELSYNC_DEMO_CHATBOT_PORT (default 8000), OLLAMA_HOST, DEMO_ONCE=1 (exit
after the backfill instead of watching; used to check the demo itself).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.support.corpus import rich_conversation, write_atomic, write_corpus
from tests.support.labelstudio import LabelStudioServer, ensure_installed

HERE = Path.cwd()
DEMO = HERE / ".demo"
WATCH_DIR = HERE / "data" / "conversations"
USERNAME = "admin@labelsync.local"


def say(message: str) -> None:
    print(f"\033[1m[demo]\033[0m {message}", flush=True)


def credentials() -> dict[str, str]:
    """Made once, kept in .demo/ (git-ignored), so the login survives reruns."""
    path = DEMO / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    DEMO.mkdir(exist_ok=True)
    made = {"password": secrets.token_urlsafe(12), "token": secrets.token_hex(20)}
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


def labelsync(
    *args: str, env: dict[str, str], capture: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labelsync.cli", *args],
        env=env,
        text=True,
        capture_output=capture,
        check=False,
    )


def project_id(env: dict[str, str]) -> int:
    """The demo's evaluation project: created once with `labelsync init-project`."""
    path = DEMO / "project_id"
    if path.exists():
        known = int(path.read_text())
        response = httpx.get(
            f"{env['LABEL_STUDIO_URL']}/api/projects/{known}",
            headers={"Authorization": f"Token {env['LABEL_STUDIO_API_KEY']}"},
        )
        if response.status_code == 200:
            return known
    result = labelsync(
        "init-project", "--title", "Chatbot evaluation (labelsync demo)", env=env, capture=True
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    path.write_text(result.stdout.strip())
    return int(result.stdout.strip())


def write_log(path: Path) -> None:
    """A bot's message-per-line log: three conversations interleaved, as they happened."""
    lines = []
    for turn in range(2):
        for thread, topic in (("log-a", "my invoice"), ("log-b", "a refund"), ("log-c", "login")):
            lines.append(
                {
                    "conversation_id": thread,
                    "role": "user",
                    "content": f"About {topic}, question {turn + 1}?",
                }
            )
            lines.append(
                {
                    "conversation_id": thread,
                    "role": "assistant",
                    "content": f"Here is what I know about {topic} ({turn + 1}).",
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def ollama_answers(host: str) -> bool:
    try:
        return httpx.get(f"{host.rstrip('/')}/api/version", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    ensure_installed()
    creds = credentials()
    port = int(os.environ.get("LABELSYNC_DEMO_PORT", "8080"))
    server = LabelStudioServer(
        DEMO / "label-studio",
        port=port,
        username=USERNAME,
        password=creds["password"],
        legacy_token=creds["token"],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    children: list[subprocess.Popen[bytes]] = []
    try:
        say(f"starting Label Studio on {server.url} (first start: about a minute)")
        server.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "CI"))}
        env |= {
            "LABEL_STUDIO_URL": server.url,
            "LABEL_STUDIO_API_KEY": creds["token"],
            "LABELSYNC_STATE_DIR": str(DEMO / "state"),
            "LABELSYNC_WATCH_DIR": str(WATCH_DIR),
            "LABELSYNC_QUIET_SECONDS": os.environ.get("LABELSYNC_QUIET_SECONDS", "15"),
        }
        env["LABEL_STUDIO_PROJECT_ID"] = str(project_id(env))
        if not any(WATCH_DIR.glob("*.json")):
            write_corpus(WATCH_DIR, 24, prefix="sample")
            write_atomic(WATCH_DIR / "conversation_reset-token.json", rich_conversation())
            write_log(WATCH_DIR / "support-bot.jsonl")
            say(
                f"wrote 25 sample conversations and a message log of 3 more to {WATCH_DIR} "
                "(open reset-token in Label Studio: code, a table, the chat user's thumbs)"
            )
        say("labelsync backfill")
        labelsync("backfill", env=env)

        project_url = f"{server.url}/projects/{env['LABEL_STUDIO_PROJECT_ID']}"
        print(
            f"\n  Label Studio  {project_url}\n  login         {USERNAME} / {creds['password']}\n"
            f"  status        LABELSYNC_STATE_DIR={DEMO / 'state'} .venv/bin/labelsync status\n"
        )
        if os.environ.get("DEMO_ONCE"):
            return

        log_dir = DEMO / "logs"
        log_dir.mkdir(exist_ok=True)
        with open(log_dir / "labelsync-run.log", "ab") as log:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "labelsync.cli", "run"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        chat_port = os.environ.get("LABELSYNC_DEMO_CHATBOT_PORT", "8000")
        ollama = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
        if not ollama.startswith("http"):
            ollama = f"http://{ollama}"
        with open(log_dir / "chatbot.log", "ab") as log:
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "labelsync_chatbot",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        chat_port,
                    ],
                    env={**env, "CHAINLIT_APP_ROOT": str(DEMO / "chainlit")},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        say(f"labelsync run is watching {WATCH_DIR} (log: {log_dir / 'labelsync-run.log'})")
        say(f"chatbot: http://127.0.0.1:{chat_port} (log: {log_dir / 'chatbot.log'})")
        if not ollama_answers(ollama):
            say(
                f"no Ollama answers at {ollama}: the chatbot will say so in the chat. To get one: "
                "install it from https://ollama.com/download, run `ollama serve` and "
                "`ollama pull llama3.2`, or set OLLAMA_HOST to a running one "
                "(or OPENAI_API_KEY / ANTHROPIC_API_KEY for a cloud model)."
            )
        say("chat, press 'End conversation', and the task appears in Label Studio. Ctrl-C stops.")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        server.stop()
        say("stopped")


if __name__ == "__main__":
    main()
