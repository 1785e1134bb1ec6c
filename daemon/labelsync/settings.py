"""Settings, built once at the edge (the CLI) and handed down as plain values.

Sources, highest first: command-line options, environment, `.env`, the TOML
file given with `--config`, the secrets directory (systemd's
`$CREDENTIALS_DIRECTORY`, files `label-studio-api-key` and
`labelsync-state-password`), defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from labelsync.contract import ROLES
from labelsync.readers.base import (
    DEFAULT_CONTENT_KEYS,
    DEFAULT_ID_FIELDS,
    DEFAULT_MESSAGES_FIELDS,
    DEFAULT_ROLE_KEYS,
    SKIP,
    Options,
)
from labelsync.redact import RedactionConfigError, Redactor, build_redactor
from labelsync.rules import Rules, RulesError
from labelsync.rules import parse as rules_parse

CREDENTIAL_NAME = "label-studio-api-key"
STATE_PASSWORD_CREDENTIAL = "labelsync-state-password"
# delivery.DEFAULT_MAX_REQUEST_BYTES (not imported: `status` and `validate` need
# no HTTP stack); why this size is said there.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


class ConfigError(Exception):
    """Every configuration problem at once, as one line a person can act on."""


def _env(name: str, field: str) -> Any:
    # The tutorial's LABEL_STUDIO_* names keep working; the TOML file uses field names.
    return AliasChoices(name, field)


def _default_state_dir() -> Path:
    if "STATE_DIRECTORY" in os.environ:  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "labelsync"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LABELSYNC_",
        env_file=".env",
        env_ignore_empty=True,  # "KEY=" in an env file means "use the default"
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    label_studio_url: str = Field(
        "http://localhost:8080", validation_alias=_env("LABEL_STUDIO_URL", "label_studio_url")
    )
    label_studio_api_key: SecretStr | None = Field(
        None, validation_alias=_env("LABEL_STUDIO_API_KEY", "label_studio_api_key"), repr=False
    )
    label_studio_project_id: int | None = Field(
        None, gt=0, validation_alias=_env("LABEL_STUDIO_PROJECT_ID", "label_studio_project_id")
    )

    watch_dir: Path = Path("data/conversations")
    state_dir: Path = Field(default_factory=_default_state_dir)
    # PostgreSQL instead of the SQLite file in state_dir: postgresql://user@host:port/db.
    # Secret as a whole (it may hold the password); shown only without the password.
    state_url: SecretStr | None = Field(None, repr=False)
    # The password, when not in the URL: the secrets directory (or libpq's ~/.pgpass).
    state_password: SecretStr | None = Field(None, repr=False)
    # Connections to PostgreSQL: the daemon's loop and its reader thread use one each.
    state_pool_size: int = Field(4, ge=2, le=100)
    # How long a call waits for PostgreSQL before it fails (and the daemon waits).
    state_timeout_seconds: float = Field(10.0, gt=0)
    # This daemon among those sharing a PostgreSQL state: shown by `status`, and the
    # site of its file records (paths are this host's). Default: the host name.
    daemon_name: str | None = Field(None, min_length=1, max_length=100)
    # Which file names are conversations: JSON documents and JSON Lines logs.
    pattern: Annotated[list[str], NoDecode] = ["*.json", "*.jsonl", "*.ndjson"]
    recursive: bool = False
    # A symlink is followed only to a file inside the watch directory, unless this is set.
    follow_symlinks: bool = False
    min_turns: int = Field(2, ge=0)
    # When version N+1 is sent, earlier versions nobody worked on are deleted from the
    # project (one live task per conversation); true keeps every version.
    keep_versions: bool = False
    batch_size: int = Field(1000, ge=1, le=10_000)
    max_file_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    timeout_seconds: float = Field(30.0, gt=0)
    import_timeout_seconds: float = Field(120.0, gt=0)
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    retry_attempts: int = Field(8, ge=1)

    # Watch mode (`labelsync run`).
    quiet_seconds: float = Field(300.0, gt=0)
    max_wait_seconds: float = Field(3600.0, gt=0)
    settle_seconds: float = Field(2.0, ge=0)
    flush_seconds: float = Field(0.25, ge=0)
    rescan_seconds: float = Field(300.0, gt=0)
    polling: bool = False
    polling_interval_seconds: float = Field(2.0, gt=0)
    metrics_addr: str | None = None

    id_fields: Annotated[list[str], NoDecode] = list(DEFAULT_ID_FIELDS)
    messages_fields: Annotated[list[str], NoDecode] = list(DEFAULT_MESSAGES_FIELDS)
    role_keys: Annotated[list[str], NoDecode] = list(DEFAULT_ROLE_KEYS)
    content_keys: Annotated[list[str], NoDecode] = list(DEFAULT_CONTENT_KEYS)
    # Your roles as labelsync's: "user_message:user,bot:assistant,debug:skip".
    role_map: Annotated[dict[str, str], NoDecode] = {}

    # Production traffic: which conversations are sent, where, and what leaves the machine.
    sample_rate: float = Field(1.0, ge=0, le=1)  # the share sent, decided by a hash of the id
    rules: list[dict[str, Any]] = []  # [[rules]] in the TOML file: always send, route
    cap_per_hour: int = Field(0, ge=0)  # new tasks a project gets at most an hour (0: no cap)
    cap_per_day: int = Field(0, ge=0)
    redact: Annotated[list[str], NoDecode] = []  # "default", or detector names; off when empty
    redact_patterns: list[dict[str, Any]] = []  # [[redact_patterns]] in the TOML file
    redact_ner_model: str = "en_core_web_sm"

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator(
        "pattern",
        "id_fields",
        "messages_fields",
        "role_keys",
        "content_keys",
        "redact",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # LABELSYNC_ID_FIELDS=conversation_id,metadata.thread_id reads as a list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("role_map", mode="before")
    @classmethod
    def _role_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                value = json.loads(value)
            else:
                pairs = [part.rsplit(":", 1) for part in value.split(",") if part.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError("expected source:role pairs, e.g. bot_message:assistant")
                value = {source.strip(): role.strip() for source, role in pairs}
        if isinstance(value, dict):
            allowed = (*ROLES, SKIP)
            wrong = sorted(str(r) for r in value.values() if r not in allowed)
            if wrong:
                raise ValueError(f"roles are {', '.join(allowed)}; got {', '.join(wrong)}")
            return {str(k).strip().lower(): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _clocks(self) -> Settings:
        if self.max_wait_seconds < self.quiet_seconds:
            raise ValueError("LABELSYNC_MAX_WAIT_SECONDS must be at least LABELSYNC_QUIET_SECONDS")
        return self

    @field_validator("label_studio_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if "@" in parts.netloc:
            # It would be printed and stored with the URL, and Label Studio
            # authenticates by the API key anyway: refused, never shown.
            raise ValueError(
                "must not contain a user name or password (user:password@); "
                "Label Studio authenticates with LABEL_STUDIO_API_KEY"
            )
        if not parts.hostname:
            raise ValueError("has no host name")
        return value.rstrip("/")

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value().strip()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or postgres://)")
        try:
            urlsplit(url)
        except ValueError:
            raise ValueError("is not a valid URL") from None
        return SecretStr(url)

    @field_validator("daemon_name")
    @classmethod
    def _daemon_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or not value.isprintable() or ":" in value:
            raise ValueError("must be a printable name without ':' (e.g. the host name)")
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _metrics_addr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from labelsync.metrics import normalise_addr  # only when metrics are asked for

        return normalise_addr(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source reads model_config["toml_file"], set per call by load().
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            _CredentialSource(settings_cls),
        )

    @property
    def api_key(self) -> str:
        return self.label_studio_api_key.get_secret_value() if self.label_studio_api_key else ""

    @property
    def database_url(self) -> str | None:
        """LABELSYNC_STATE_URL as given (password included): for the state's opening only."""
        return self.state_url.get_secret_value() if self.state_url else None

    @property
    def database_password(self) -> str | None:
        return self.state_password.get_secret_value() if self.state_password else None

    @property
    def options(self) -> Options:
        """What the readers need to know of the user's own JSON."""
        return Options(
            tuple(self.id_fields),
            tuple(self.messages_fields),
            tuple(self.role_keys),
            tuple(self.content_keys),
            dict(self.role_map),
        )

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(self.pattern)

    def production_rules(self) -> Rules:
        """Sampling and routing, from LABELSYNC_SAMPLE_RATE and the [[rules]] tables."""
        assert self.label_studio_project_id is not None
        try:
            return rules_parse(self.rules, self.label_studio_project_id, self.sample_rate)
        except RulesError as exc:
            raise ConfigError(f"configuration: rules: {exc}") from None

    def redactor(self, named_entities: bool = True) -> Redactor:
        """LABELSYNC_REDACT and the [[redact_patterns]] tables, checked even when off
        (`named_entities=False`: without the model, which takes seconds to load)."""
        try:
            return build_redactor(
                self.redact,
                self.redact_patterns,
                ner_model=self.redact_ner_model,
                named_entities=named_entities,
            )
        except RedactionConfigError as exc:
            raise ConfigError(f"configuration: {exc}") from None

    def require(self, *names: str) -> None:
        """Fail with one message when settings a command needs are missing."""
        env = {
            "label_studio_api_key": "LABEL_STUDIO_API_KEY",
            "label_studio_project_id": "LABEL_STUDIO_PROJECT_ID",
        }
        missing = [env.get(n, n) for n in names if getattr(self, n) in (None, "")]
        if missing:
            raise ConfigError(
                "configuration: "
                + "; ".join(f"{m} is not set" for m in missing)
                + " (environment, .env, --config TOML file, or credentials directory)"
            )


class _CredentialSource(PydanticBaseSettingsSource):
    """systemd's LoadCredential=label-studio-api-key:... lands in $CREDENTIALS_DIRECTORY."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        found: dict[str, str] = {}
        for field, name in (
            ("label_studio_api_key", CREDENTIAL_NAME),
            ("state_password", STATE_PASSWORD_CREDENTIAL),
        ):
            with contextlib.suppress(FileNotFoundError):
                found[field] = (Path(directory) / name).read_text().strip()
        return found


def load(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, or raise ConfigError naming every bad setting (never the key)."""
    cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"configuration: --config {config_file}: no such file")
        cls = type(  # type: ignore[assignment]
            "Settings",
            (Settings,),
            {
                "model_config": SettingsConfigDict(
                    **{**Settings.model_config, "toml_file": config_file}
                )
            },
        )
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(
            "configuration: " + "; ".join(_problem(e) for e in exc.errors())
        ) from None
    except ValueError as exc:  # a TOML file or an env value that does not parse
        where = f"{config_file}: " if config_file else ""
        raise ConfigError(f"configuration: {where}{exc}") from None


def _problem(error: Any) -> str:
    if not error["loc"]:  # a rule between settings; its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0]).lower()
    name = {
        "label_studio_url": "LABEL_STUDIO_URL",
        "label_studio_api_key": "LABEL_STUDIO_API_KEY",
        "label_studio_project_id": "LABEL_STUDIO_PROJECT_ID",
    }.get(field, f"LABELSYNC_{field.upper()}")
    message = str(error["msg"]).removeprefix("Value error, ")
    if field in ("label_studio_api_key", "state_password"):
        return f"{name}: {message}"
    shown = error.get("input")
    if isinstance(shown, SecretStr):
        shown = shown.get_secret_value()
    if field in ("label_studio_url", "state_url") and isinstance(shown, str):
        shown = _without_userinfo(shown)
    return f"{name}: {message} (got {shown!r})"


def _without_userinfo(url: str) -> str:
    """A URL fit for an error message: a user name or password never is."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}" if sep else url.partition("@")[2] or url
