"""What labelsync reads out of any file: conversations of messages, and their keys.

Readers (labelsync.readers) turn each source shape into a `Conversation`;
everything downstream (planning, tasks, state) sees only this. Pure: no IO.

Keys, each a deterministic hash:
- `sync_key`: (conversation, content). What an annotator judges: roles and
  texts. It is stored in the task's `data` and is how labelsync finds its own
  tasks. Ignored on purpose: time stamps (rewritten on every save),
  turn_count (derived), model/provider (labels, not content), `ended` (a
  marker that flips without the dialogue changing), metadata, and the chat
  user's feedback (a thumbs-up given later is not new content: it updates the
  live task instead of making a version).
- `legacy_key`: the sync key of labelsync 0.1 (feedback included), so content
  sent by that release is still recognised.
- `feedback_key`: the chat user's feedback alone, to notice when only it changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any

CONTRACT = "labelsync/1"
_KEY_VERSION = "labelsync/2"  # sync keys without feedback (0.1 used CONTRACT, with it)

ROLES = ("user", "assistant", "system", "tool")

# The tutorial logger's snapshot name carries a time stamp after the id.
_FILE_NAME_ID = re.compile(r"^(?:conversation_)?(?P<id>.+?)(?:_\d{8}_\d{6})?$")


class InvalidConversation(ValueError):
    """Not a conversation labelsync can send; `reason` is one line a bot author can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES, or the source's own role when it maps to none
    content: str  # what the annotator reads; never empty for a real turn
    timestamp: str | None = None
    feedback: Mapping[str, Any] | None = None  # the chat user's thumbs: {score, comment, at}
    model: str | None = None  # which model wrote this reply, when the source says
    provider: str | None = None
    id: str | None = None  # the source's own message id


@dataclass(frozen=True)
class Conversation:
    thread_id: str
    messages: tuple[Message, ...]
    shape: str  # the reader that understood it, e.g. "chatgpt-export"
    model: str | None = None
    timestamp: str | None = None
    ended: bool = False
    # True when the conversation cannot grow any more where it was read: an
    # export or a dataset row. A short one is then "too short", not "waiting".
    final: bool = False
    title: str | None = None
    # Top-level fields labelsync does not interpret; they travel in the task's meta.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Things the reader showed as placeholders (unknown block types, ...): `validate` lists them.
    warnings: tuple[str, ...] = ()

    @cached_property
    def user_turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    @cached_property
    def sync_key(self) -> str:
        canonical = _canonical([[m.role, m.content.strip()] for m in self.messages])
        return _hash(_KEY_VERSION, self.thread_id, canonical)

    @cached_property
    def legacy_key(self) -> str:
        canonical = _canonical(
            [[m.role, m.content.strip(), m.feedback or None] for m in self.messages]
        )
        return _hash(CONTRACT, self.thread_id, canonical)

    @cached_property
    def feedback_key(self) -> str:
        """Empty when nobody gave feedback, else a hash of what was said about which message.

        When it was said (`at`) is left out: a chat app that sends the same rating
        again with a new time has not changed the feedback.
        """
        given = [
            [i, m.feedback.get("score"), m.feedback.get("comment")]
            for i, m in enumerate(self.messages)
            if m.feedback
        ]
        return _hash(_KEY_VERSION, self.thread_id, _canonical(given)) if given else ""


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def id_from_file_name(file_name: str) -> str:
    """A conversation named only by its file: `conversation_<id>[_<YYYYmmdd_HHMMSS>].json`."""
    stem = PurePath(file_name).name.split(".", 1)[0] or PurePath(file_name).stem
    match = _FILE_NAME_ID.match(stem)
    return match.group("id") if match else stem


def id_from_content(messages: tuple[Message, ...]) -> str:
    """An id for a conversation that has none, stable across re-exports and reorderings.

    Built from how it starts (system prompts, the first question, the first
    answer), never from its position in the file, so the same conversation
    read again gets the same id, and one that grew (a request log that holds
    the whole history at every turn) becomes its next version. Two different
    conversations that open with the same question *and* the same answer are
    taken as one; that is rare outside duplicated datasets, where it is right.
    """
    opening: list[list[str]] = []
    seen = {"user": False, "assistant": False}
    for m in messages:
        if m.role == "system" and not any(seen.values()):
            opening.append([m.role, m.content.strip()])
        elif m.role in seen and not seen[m.role]:
            if m.role == "assistant" and not seen["user"]:
                opening.append([m.role, m.content.strip()])  # a greeting before the question
                continue
            seen[m.role] = True
            opening.append([m.role, m.content.strip()])
        if all(seen.values()):
            break
    return "sha-" + _hash(_KEY_VERSION, _canonical(opening))[:20]


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
