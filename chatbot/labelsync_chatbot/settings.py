"""The chatbot's settings, read once from the environment (and `.env`) at the edge.

`LABELSYNC_WATCH_DIR` is the daemon's own setting, so one env file serves both.
Everything chatbot-only is prefixed `LABELSYNC_CHATBOT_`, except the names users
already have in their shells (`OLLAMA_HOST`, `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Chainlit's CI mode (any `CI=true` in the env) sets this key so its own tests can
# import openai. It is not a configured provider.
FAKE_OPENAI_KEY = "sk-FAKE-OPENAI-API-KEY"

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant."


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ChatbotSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    watch_dir: Path = Field(
        Path("data/conversations"), validation_alias=_alias("LABELSYNC_WATCH_DIR")
    )
    ollama_host: str | None = Field(None, validation_alias=_alias("OLLAMA_HOST"))
    # "provider:model"; a bare name means an Ollama model.
    default_model: str = Field(
        "ollama:llama3.2", validation_alias=_alias("LABELSYNC_CHATBOT_DEFAULT_MODEL")
    )
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT, validation_alias=_alias("LABELSYNC_CHATBOT_SYSTEM_PROMPT")
    )
    openai_api_key: SecretStr | None = Field(None, validation_alias=_alias("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_alias("OPENAI_BASE_URL"))
    openai_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["gpt-4o-mini"],
        validation_alias=_alias("LABELSYNC_CHATBOT_OPENAI_MODELS"),
    )
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_alias("ANTHROPIC_API_KEY"))
    anthropic_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["claude-3-5-haiku-latest"],
        validation_alias=_alias("LABELSYNC_CHATBOT_ANTHROPIC_MODELS"),
    )
    max_tokens: int = Field(1024, gt=0, validation_alias=_alias("LABELSYNC_CHATBOT_MAX_TOKENS"))
    # Resume and feedback need a data layer. Deliberately NOT `DATABASE_URL`: that
    # name silently switches on Chainlit's own Postgres data layer.
    database_url: str | None = Field(
        None, validation_alias=_alias("LABELSYNC_CHATBOT_DATABASE_URL")
    )
    # "alice:secret,bob:other": password login. Needs CHAINLIT_AUTH_SECRET too.
    users: SecretStr | None = Field(None, validation_alias=_alias("LABELSYNC_CHATBOT_USERS"))

    @field_validator("openai_models", "anthropic_models", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("openai_api_key", "anthropic_api_key", "users", mode="before")
    @classmethod
    def _blank_or_fake_is_unset(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and raw.strip() in ("", FAKE_OPENAI_KEY)):
            return None
        return value

    @field_validator("ollama_host", "database_url", "openai_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("users")
    @classmethod
    def _users_are_pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_users(value.get_secret_value())
        return value

    def user_passwords(self) -> dict[str, str]:
        return parse_users(self.users.get_secret_value()) if self.users else {}

    @property
    def auth_enabled(self) -> bool:
        return self.users is not None

    @property
    def resume_enabled(self) -> bool:
        return self.auth_enabled and self.database_url is not None


def parse_users(raw: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for pair in raw.split(","):
        name, sep, password = pair.strip().partition(":")
        if not sep or not name or not password:
            # Never echo the value: it holds passwords.
            raise ValueError("LABELSYNC_CHATBOT_USERS must look like 'alice:password,bob:other'")
        users[name] = password
    return users


class SettingsProblem(Exception):
    """Every configuration problem at once, as one readable message."""


def load_settings(**overrides: object) -> ChatbotSettings:
    try:
        return ChatbotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"  {where}: {error['msg']}")
        raise SettingsProblem("invalid chatbot settings:\n" + "\n".join(lines)) from None
