"""labelsync_chatbot/__main__.py: the `labelsync-chatbot` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labelsync_chatbot.__main__ import APP_PATH, chainlit_command, default_app_root, parse_args


def test_runs_chainlit_headless_on_the_app_without_ci(tmp_path):
    args = parse_args(["--host", "127.0.0.1", "--port", "9123", "--app-root", str(tmp_path)])
    env = {"CI": "true", "PATH": "/usr/bin", "OLLAMA_HOST": "http://127.0.0.1:1"}
    argv, child_env = chainlit_command(args, env)
    assert argv[1:4] == ["-m", "chainlit", "run"]
    assert Path(argv[4]) == APP_PATH and APP_PATH.exists()
    assert "--headless" in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "9123"
    assert "CI" not in child_env
    assert child_env["CHAINLIT_APP_ROOT"] == str(tmp_path.resolve())
    assert child_env["OLLAMA_HOST"] == "http://127.0.0.1:1"


def test_chainlit_files_default_outside_the_current_directory(tmp_path):
    assert default_app_root({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "labelsync-chatbot"
    assert default_app_root({"CHAINLIT_APP_ROOT": "/srv/x"}) == Path("/srv/x")


def test_bad_settings_are_reported_in_one_message_without_starting(tmp_path):
    env = {"PATH": "/usr/bin", "LABELSYNC_CHATBOT_MAX_TOKENS": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "labelsync_chatbot", "--app-root", str(tmp_path / "root")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "LABELSYNC_CHATBOT_MAX_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


def test_login_without_a_chainlit_secret_is_refused_with_the_fix(tmp_path):
    env = {"PATH": "/usr/bin", "LABELSYNC_CHATBOT_USERS": "alice:pw"}
    result = subprocess.run(
        [sys.executable, "-m", "labelsync_chatbot", "--app-root", str(tmp_path / "root")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "chainlit create-secret" in result.stderr
