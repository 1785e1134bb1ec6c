"""Message-per-line logs: each line one message (or event) of some conversation.

    {"conversation_id": "c1", "role": "user", "content": "Hi", "timestamp": "..."}

The conversation id may be spelled `conversation_id`, `conversationId`,
`thread_id`, `threadId`, `session_id` or `sessionId`; a line without one
belongs to the file's own conversation (a log per conversation). A line
marking the end (`{"conversation_id": "c1", "ended": true}` or
`"type": "end"`) carries no message. Lines are grouped per conversation in
the order they were written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import Message
from labelsync.readers import messages
from labelsync.readers.base import SKIP, Draft, Options, id_or_none

CONVERSATION_KEYS = (
    "conversation_id",
    "conversationId",
    "thread_id",
    "threadId",
    "session_id",
    "sessionId",
)
_END_TYPES = {"end", "ended", "conversation_end", "conversation.ended", "close"}


def conversation_of(doc: Mapping[str, Any]) -> str | None:
    for key in CONVERSATION_KEYS:
        found = id_or_none(doc.get(key))
        if found:
            return found
    return None


def is_event(doc: Mapping[str, Any], options: Options) -> bool:
    """A single message (or an end marker) rather than a whole conversation."""
    if is_end_marker(doc):
        return True
    has_role = any(isinstance(doc.get(k), str) for k in ("role", "from", "sender", "speaker"))
    has_content = any(k in doc for k in options.content_keys) or "tool_calls" in doc
    return has_role and has_content


def is_end_marker(doc: Mapping[str, Any]) -> bool:
    if "role" in doc or "content" in doc:
        return False
    kind = doc.get("type") or doc.get("event")
    return doc.get("ended") is True or (isinstance(kind, str) and kind.lower() in _END_TYPES)


def event_messages(doc: Mapping[str, Any], where: str, options: Options) -> list[Message]:
    """The message(s) one event line holds; empty for an end marker or a skipped role.

    Raises InvalidConversation, with `where` in the reason, for a malformed line.
    """
    if is_end_marker(doc):
        return []
    draft = Draft(messages=[], shape="events")
    messages.read_list([doc], where, options, draft)
    return [m for m in draft.messages if m.role != SKIP]
