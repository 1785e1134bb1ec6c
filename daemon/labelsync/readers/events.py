"""Message-per-line logs: each line one message (or event) of some conversation.

    {"conversation_id": "c1", "role": "user", "content": "Hi", "timestamp": "..."}

The conversation id may be spelled `conversation_id`, `conversationId`,
`thread_id`, `threadId`, `session_id` or `sessionId`; a line without one
belongs to the file's own conversation (a log per conversation). A line
marking the end (`{"conversation_id": "c1", "ended": true}` or
`"type": "end"`) carries no message. Lines are grouped per conversation in
the order they were written.

Some frameworks write such lines in their own shape, recognised here too:

    rasa            Rasa's event broker stream: `sender_id` + `event`; only
                    `user` and `bot` events are messages, the rest show nothing
    langchain-sql   SQLChatMessageHistory rows: `session_id` + `message`, a
                    LangChain message dict as JSON text
    chainlit-step   Chainlit steps written one per line: `threadId` + `type`;
                    run/llm steps and empty first writes show nothing
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import Message
from labelsync.readers import chainlit, langchain, messages, rasa
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
    if rasa.is_event(doc):
        return rasa.conversation_of(doc)
    return None


def kind(doc: Mapping[str, Any], options: Options) -> str | None:
    """Which kind of event line this is ("message", "end", "rasa", ...); None for a line
    that is not one event (a whole conversation, or something else)."""
    if is_end_marker(doc):
        return "end"
    family = _family(doc)
    if family is not None:
        return family
    has_role = any(isinstance(doc.get(k), str) for k in ("role", "from", "sender", "speaker"))
    has_content = any(k in doc for k in options.content_keys) or "tool_calls" in doc
    return "message" if has_role and has_content else None


def is_event(doc: Mapping[str, Any], options: Options) -> bool:
    """A single message (or an end marker) rather than a whole conversation."""
    return kind(doc, options) is not None


def is_end_marker(doc: Mapping[str, Any]) -> bool:
    if "role" in doc or "content" in doc:
        return False
    marker = doc.get("type") or doc.get("event")
    return doc.get("ended") is True or (isinstance(marker, str) and marker.lower() in _END_TYPES)


def event_messages(doc: Mapping[str, Any], where: str, options: Options) -> list[Message]:
    """The message(s) one event line holds; empty for an end marker or a skipped role.

    Raises InvalidConversation, with `where` in the reason, for a malformed line.
    """
    if is_end_marker(doc):
        return []
    family = _family(doc)
    if family == "rasa":
        return rasa.event_messages(doc, where)
    if family == "langchain-sql":
        return langchain.row_messages(doc, where)
    if family == "chainlit-step":
        return chainlit.step_messages(doc)
    draft = Draft(messages=[], shape="events")
    messages.read_list([doc], where, options, draft)
    return [m for m in draft.messages if m.role != SKIP]


def _family(doc: Mapping[str, Any]) -> str | None:
    # The generic shape has a "role"; these have none, so they cannot be mistaken for it.
    if "role" in doc:
        return None
    if rasa.is_event(doc):
        return "rasa"
    if langchain.is_row(doc):
        return "langchain-sql"
    if chainlit.is_step(doc):
        return "chainlit-step"
    return None


def append(conversation: list[Message], doc: Mapping[str, Any], new: list[Message]) -> None:
    """Add a line's messages to a conversation. A Chainlit step written again (streamed,
    then finished) replaces its earlier write where it stood; other families' ids are not
    trusted to be unique, so their lines are only ever added."""
    replaces = _family(doc) == "chainlit-step"
    for message in new:
        if replaces and message.id is not None:
            for index, known in enumerate(conversation):
                if known.id == message.id:
                    conversation[index] = message
                    break
            else:
                conversation.append(message)
        else:
            conversation.append(message)
