"""The conversation file contract: what labelsync reads, in one place.

A file is parsed into a `Conversation`, whatever shape the bot wrote:

- labelsync's own shape (daemon/labelsync/schema/conversation.v1.schema.json), which is
  the Chainlit tutorial logger's `{session_id, timestamp, model, messages,
  turn_count, metadata}` plus optional fields;
- OpenAI-style `{"id"?, "messages": [...]}`, where `content` may be a list of parts;
- ShareGPT `{"conversations": [{"from": "human", "value": ...}]}`.

Everything here is pure: bytes in, `Conversation` or `InvalidConversation` out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any

CONTRACT = "labelsync/1"

# Keys that identify a conversation, most specific first (dotted paths).
DEFAULT_ID_FIELDS = ("metadata.thread_id", "thread_id", "session_id", "id")
# Top-level keys that hold the message list, in the order they are tried.
DEFAULT_MESSAGES_FIELDS = ("messages", "conversations")
DEFAULT_ROLE_KEYS = ("role", "from")
DEFAULT_CONTENT_KEYS = ("content", "value", "text")

# Read as user / assistant so every shape lands on the same four roles.
_ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}

# The tutorial logger's snapshot name carries a time stamp after the id.
_FILE_NAME_ID = re.compile(r"^(?:conversation_)?(?P<id>.+?)(?:_\d{8}_\d{6})?$")

MAX_DEPTH = 64


class InvalidConversation(ValueError):
    """The file can not become a task; `reason` is one line a bot author can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Fields:
    """Which fields are read, so a bot with its own JSON needs no code."""

    id_fields: tuple[str, ...] = DEFAULT_ID_FIELDS
    messages_fields: tuple[str, ...] = DEFAULT_MESSAGES_FIELDS
    role_keys: tuple[str, ...] = DEFAULT_ROLE_KEYS
    content_keys: tuple[str, ...] = DEFAULT_CONTENT_KEYS


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    timestamp: str | None = None
    feedback: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Conversation:
    thread_id: str
    messages: tuple[Message, ...]
    shape: str
    model: str | None = None
    timestamp: str | None = None
    ended: bool = False
    # Top-level fields labelsync does not interpret; they travel in the task's meta.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def user_turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    @cached_property
    def sync_key(self) -> str:
        """Deterministic key for (conversation, content), stored in the task's data.

        Only what an annotator judges goes into it: role, text and the chat
        user's feedback. Ignored on purpose: time stamps (rewritten on every
        save), turn_count (derived), model/provider (labels, not content),
        `ended` (a marker that flips without the dialogue changing), metadata.
        """
        canonical = json.dumps(
            [[m.role, m.content.strip(), m.feedback or None] for m in self.messages],
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        )
        digest = hashlib.sha256(f"{CONTRACT}\0{self.thread_id}\0{canonical}".encode())
        return digest.hexdigest()[:32]


def parse(raw: bytes, file_name: str, fields: Fields = Fields()) -> Conversation:
    """Parse one file's bytes, or raise InvalidConversation with a one-line reason."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except RecursionError:
        raise InvalidConversation(f"nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise InvalidConversation(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidConversation(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidConversation(f"top level is a JSON {_json_type(doc)}, expected an object")
    # Only a document with more brackets than the limit can nest deeper than it.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(doc) > MAX_DEPTH:
        raise InvalidConversation(f"nests deeper than {MAX_DEPTH} levels")
    return from_document(doc, file_name, fields)


def from_document(
    doc: Mapping[str, Any], file_name: str, fields: Fields = Fields()
) -> Conversation:
    messages_key = next((k for k in fields.messages_fields if k in doc), None)
    if messages_key is None:
        wanted = " or ".join(f'"{k}"' for k in fields.messages_fields)
        raise InvalidConversation(f"no message list: expected a {wanted} array")
    raw_messages = doc[messages_key]
    if not isinstance(raw_messages, list):
        raise InvalidConversation(
            f'"{messages_key}" is a JSON {_json_type(raw_messages)}, expected an array'
        )
    if not raw_messages:
        raise InvalidConversation(f'"{messages_key}" is empty: nothing to evaluate')
    messages = tuple(
        _message(item, index, messages_key, fields) for index, item in enumerate(raw_messages)
    )
    shape = _shape(doc, messages_key, raw_messages)
    consumed = {messages_key, "model", "timestamp", "ended", "turn_count", "contract"}
    return Conversation(
        thread_id=_identity(doc, file_name, fields),
        messages=messages,
        shape=shape,
        model=_text_or_none(doc.get("model")),
        timestamp=_text_or_none(doc.get("timestamp")),
        ended=doc.get("ended") is True,
        extra={k: v for k, v in doc.items() if k not in consumed},
    )


def _identity(doc: Mapping[str, Any], file_name: str, fields: Fields) -> str:
    for dotted in fields.id_fields:
        value: Any = doc
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    stem = PurePath(file_name).stem
    match = _FILE_NAME_ID.match(stem)
    return match.group("id") if match else stem


def _message(item: Any, index: int, messages_key: str, fields: Fields) -> Message:
    where = f"{messages_key}[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidConversation(f"{where} is a JSON {_json_type(item)}, expected an object")
    role_key = next((k for k in fields.role_keys if k in item), None)
    if role_key is None or not isinstance(item[role_key], str) or not item[role_key].strip():
        wanted = " or ".join(f'"{k}"' for k in fields.role_keys)
        raise InvalidConversation(f"{where} has no {wanted} string")
    raw_role = item[role_key].strip().lower()
    role = _ROLE_ALIASES.get(raw_role, raw_role)
    content_key = next((k for k in fields.content_keys if item.get(k) is not None), None)
    if content_key is None:
        if item.get("tool_calls"):
            content = _tool_calls_text(item["tool_calls"])
        elif any(k in item for k in fields.content_keys):
            content = ""  # an explicit null: nothing was said
        else:
            wanted = " or ".join(f'"{k}"' for k in fields.content_keys)
            raise InvalidConversation(f"{where} has no {wanted}")
    else:
        content = _content_text(item[content_key], where)
    feedback = item.get("feedback")
    return Message(
        role=role,
        content=content,
        timestamp=_text_or_none(item.get("timestamp")),
        feedback=dict(feedback) if isinstance(feedback, Mapping) and feedback else None,
    )


def _content_text(content: Any, where: str) -> str:
    """Label Studio's dialogue view needs a string: join text parts, name the others."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, (int, float)) and not isinstance(content, bool):
        return str(content)
    if isinstance(content, list):
        pieces = [_part_text(part) for part in content]
        return "\n".join(p for p in pieces if p)
    raise InvalidConversation(
        f"{where} content is a JSON {_json_type(content)}, expected a string or a list of parts"
    )


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return f"[{_json_type(part)}]"
    kind = str(part.get("type", "part"))
    text = part.get("text")
    if isinstance(text, str):
        return text
    if isinstance(text, Mapping) and isinstance(text.get("value"), str):  # Assistants API
        return str(text["value"])
    name = kind.removeprefix("input_").removesuffix("_url")
    return f"[{name}]"


def _tool_calls_text(calls: Any) -> str:
    names = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            names.append(f"{function.get('name', '?')}({function.get('arguments', '')})")
    return "[tool call: " + ", ".join(names) + "]" if names else "[tool call]"


def _shape(doc: Mapping[str, Any], messages_key: str, raw: Sequence[Any]) -> str:
    if messages_key == "conversations":
        return "sharegpt"
    if doc.get("contract") == CONTRACT:
        return "labelsync"
    if "session_id" in doc or "turn_count" in doc:
        return "tutorial"
    return "openai"


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _depth(value: Any) -> int:
    """Nesting depth, iteratively: the input is untrusted."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
