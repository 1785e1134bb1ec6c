"""What every reader shares: the options a user sets, the draft a reader returns, roles."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelsync.contract import InvalidConversation, Message

# Where the conversation id is (dotted paths, first found wins).
DEFAULT_ID_FIELDS = ("metadata.thread_id", "thread_id", "session_id", "conversation_id", "id")
# Where the message list is, in the order tried.
DEFAULT_MESSAGES_FIELDS = ("messages", "conversations", "conversation")
DEFAULT_ROLE_KEYS = ("role", "from", "sender", "speaker", "author.role")
DEFAULT_CONTENT_KEYS = ("content", "value", "text")

SKIP = "skip"  # a role mapped to this is not a message (debug lines, events)

# Every source's spelling of the four roles.
ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "customer": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatgpt": "assistant",
    "agent": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
    "observation": "tool",
}

MAX_DEPTH = 64


@dataclass(frozen=True)
class Options:
    """What the user told labelsync about their own JSON; defaults read every shape we know."""

    id_fields: tuple[str, ...] = DEFAULT_ID_FIELDS
    messages_fields: tuple[str, ...] = DEFAULT_MESSAGES_FIELDS
    role_keys: tuple[str, ...] = DEFAULT_ROLE_KEYS
    content_keys: tuple[str, ...] = DEFAULT_CONTENT_KEYS
    role_map: Mapping[str, str] = field(default_factory=dict)  # lower-case source role -> role

    @property
    def custom_fields(self) -> bool:
        """True when the user pointed labelsync at their own fields: try those first."""
        return (
            self.messages_fields != DEFAULT_MESSAGES_FIELDS
            or self.role_keys != DEFAULT_ROLE_KEYS
            or self.content_keys != DEFAULT_CONTENT_KEYS
        )

    @property
    def custom_ids(self) -> bool:
        return self.id_fields != DEFAULT_ID_FIELDS

    def role(self, raw: str) -> str:
        """The source's role as one of user/assistant/system/tool, SKIP, or itself."""
        key = raw.strip().lower()
        mapped = self.role_map.get(key) or self.role_map.get(raw.strip())
        if mapped:
            return mapped
        return ROLE_ALIASES.get(key, key)


@dataclass
class Draft:
    """A conversation as a reader understood it, before labelsync gives it an identity."""

    messages: list[Message]
    shape: str
    own_id: str | None = None
    model: str | None = None
    timestamp: str | None = None
    ended: bool = False
    final: bool = False
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reader:
    """One family of sources: how to recognise a document of it, and read it."""

    name: str
    matches: Callable[[Mapping[str, Any]], bool]
    read: Callable[[Mapping[str, Any], Options], Draft]


def dig(doc: Any, dotted: str) -> Any:
    """The value at a dotted path (`metadata.thread_id`), or None."""
    value = doc
    for part in dotted.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def first(doc: Any, paths: tuple[str, ...]) -> tuple[str, Any] | None:
    """The first of the dotted paths that is present (not null) in doc."""
    for path in paths:
        value = dig(doc, path)
        if value is not None:
            return path, value
    return None


def first_id(doc: Any, paths: tuple[str, ...]) -> str | None:
    """The first usable id (a non-blank string or an integer) at any of the dotted paths."""
    for path in paths:
        found = id_or_none(dig(doc, path))
        if found:
            return found
    return None


def text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


def id_or_none(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def need_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        from labelsync.contract import json_type

        raise InvalidConversation(f'"{where}" is a JSON {json_type(value)}, expected an array')
    return value


# Helpers for untrusted input: any field may hold any JSON type. A reader asks for
# the type it can use and gets an empty value otherwise, never a TypeError.
EMPTY: Mapping[str, Any] = {}


def obj(value: Any) -> Mapping[str, Any]:
    """value if it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else EMPTY


def array(value: Any) -> list[Any]:
    """value if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def string(value: Any) -> str | None:
    """value if it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def time_or_none(value: Any) -> str | None:
    """A time stamp as text: ISO strings as they are, epoch seconds or milliseconds as ISO UTC."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch ms since 1973
        try:
            when = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return str(value)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text_or_none(value)
