"""labelsync_chatbot/settings.py: read from the environment, secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelsync_chatbot.settings import SettingsProblem, load_settings

OURS = (
    "LABELSYNC_WATCH_DIR", "OLLAMA_HOST", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
    "LABELSYNC_CHATBOT_DEFAULT_MODEL", "LABELSYNC_CHATBOT_SYSTEM_PROMPT",
    "LABELSYNC_CHATBOT_OPENAI_MODELS", "LABELSYNC_CHATBOT_ANTHROPIC_MODELS",
    "LABELSYNC_CHATBOT_DATABASE_URL", "LABELSYNC_CHATBOT_USERS", "LABELSYNC_CHATBOT_MAX_TOKENS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults():
    s = load_settings()
    assert s.watch_dir == Path("data/conversations")
    assert s.default_model == "ollama:llama3.2"
    assert s.openai_api_key is None and s.anthropic_api_key is None
    assert not s.resume_enabled


def test_reads_the_daemons_watch_dir_and_ollama_host(monkeypatch):
    monkeypatch.setenv("LABELSYNC_WATCH_DIR", "/srv/conversations")
    monkeypatch.setenv("OLLAMA_HOST", "http://10.0.0.5:11434")
    monkeypatch.setenv("LABELSYNC_CHATBOT_ANTHROPIC_MODELS", "claude-a,claude-b")
    s = load_settings()
    assert s.watch_dir == Path("/srv/conversations")
    assert s.ollama_host == "http://10.0.0.5:11434"
    assert s.anthropic_models == ["claude-a", "claude-b"]


def test_reads_a_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("LABELSYNC_WATCH_DIR=from-dotenv\n")
    assert load_settings().watch_dir == Path("from-dotenv")


def test_chainlit_ci_fake_key_is_not_a_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-FAKE-OPENAI-API-KEY")
    assert load_settings().openai_api_key is None


def test_secrets_never_show_in_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-123456")
    monkeypatch.setenv("LABELSYNC_CHATBOT_USERS", "alice:hunter2")
    s = load_settings()
    assert "sk-live-123456" not in repr(s) and "hunter2" not in repr(s)
    assert s.user_passwords() == {"alice": "hunter2"}


def test_resume_needs_login_and_a_database(monkeypatch):
    monkeypatch.setenv("LABELSYNC_CHATBOT_DATABASE_URL", "sqlite+aiosqlite:///chainlit.db")
    assert not load_settings().resume_enabled
    monkeypatch.setenv("LABELSYNC_CHATBOT_USERS", "alice:pw")
    assert load_settings().resume_enabled


def test_every_problem_at_once_without_leaking_secrets(monkeypatch):
    monkeypatch.setenv("LABELSYNC_CHATBOT_USERS", "alice-without-password-hunter2")
    monkeypatch.setenv("LABELSYNC_CHATBOT_MAX_TOKENS", "-5")
    with pytest.raises(SettingsProblem) as caught:
        load_settings()
    message = str(caught.value)
    assert "LABELSYNC_CHATBOT_USERS" in message and "LABELSYNC_CHATBOT_MAX_TOKENS" in message
    assert "hunter2" not in message
