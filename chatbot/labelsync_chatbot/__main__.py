"""`labelsync-chatbot`: check the settings, then exec `chainlit run` on the app.

    labelsync-chatbot [--host 127.0.0.1] [--port 8000] [--app-root DIR] [--debug]

Chainlit keeps its own files (`.chainlit/config.toml`, `chainlit.md`, `.files/`)
in CHAINLIT_APP_ROOT; by default that is `$XDG_DATA_HOME/labelsync-chatbot`
(~/.local/share/labelsync-chatbot), not the current directory. Conversation
files still go to LABELSYNC_WATCH_DIR, relative to the current directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from labelsync_chatbot.settings import SettingsProblem, load_settings

APP_PATH = Path(__file__).with_name("app.py")


def default_app_root(env: Mapping[str, str]) -> Path:
    if env.get("CHAINLIT_APP_ROOT"):
        return Path(env["CHAINLIT_APP_ROOT"])
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "labelsync-chatbot"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="labelsync-chatbot",
        description="Chat with a local Ollama model (or OpenAI/Anthropic) and write each "
        "conversation as a labelsync file in LABELSYNC_WATCH_DIR.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--app-root",
        type=Path,
        default=None,
        help="Chainlit's own files (default: CHAINLIT_APP_ROOT, else "
        "~/.local/share/labelsync-chatbot)",
    )
    parser.add_argument("--debug", action="store_true", help="Chainlit debug logging")
    return parser.parse_args(argv)


def chainlit_command(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment for `chainlit run`: pure, so tests can check it."""
    app_root = (args.app_root or default_app_root(env)).resolve()
    child_env = dict(env)
    # Chainlit reads its click options from env vars: CI=true silently turns on CI
    # mode, which plants a fake OPENAI_API_KEY. Never inherit it.
    child_env.pop("CI", None)
    child_env["CHAINLIT_APP_ROOT"] = str(app_root)
    argv = [sys.executable, "-m", "chainlit", "run", str(APP_PATH), "--headless"]
    argv += ["--host", args.host, "--port", str(args.port)]
    if args.debug:
        argv.append("--debug")
    return argv, child_env


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    missing = [name for name in ("chainlit", "ollama") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"labelsync-chatbot: {', '.join(missing)} not installed; the chatbot is an extra: "
            "pip install 'labelsync[chatbot]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_settings()
    except SettingsProblem as exc:
        print(f"labelsync-chatbot: {exc}", file=sys.stderr)
        return 2
    if settings.auth_enabled and not env.get("CHAINLIT_AUTH_SECRET"):
        print(
            "labelsync-chatbot: login is on (LABELSYNC_CHATBOT_USERS) but CHAINLIT_AUTH_SECRET "
            "is not set; create one with `chainlit create-secret`.",
            file=sys.stderr,
        )
        return 2
    command, child_env = chainlit_command(args, env)
    Path(child_env["CHAINLIT_APP_ROOT"]).mkdir(parents=True, exist_ok=True)
    print(
        f"labelsync-chatbot: http://{args.host}:{args.port}  conversations -> "
        f"{settings.watch_dir.resolve()}  Chainlit files -> {child_env['CHAINLIT_APP_ROOT']}",
        file=sys.stderr,
        flush=True,
    )
    # exec, so signals (Ctrl-C, SIGTERM from a supervisor) reach Chainlit directly.
    os.execve(command[0], command, child_env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
