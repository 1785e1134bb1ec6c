"""Rasa events: the event broker stream (one event per line) and tracker dumps.

Every event names its conversation by `sender_id`. Only `user` and `bot`
events are dialogue; the rest (`action`, `slot`, `session_started`,
`user_featurization`, ...) are the bot's bookkeeping and show nothing. A bot
event's `data` can carry an image, an attachment or buttons: shown before its
text, as a channel would show them. A tracker dump (`GET
/conversations/{id}/tracker`) holds the same events in one object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import parts
from labelsync.readers.base import (
    Draft,
    Options,
    Reader,
    array,
    id_or_none,
    need_list,
    obj,
    string,
    time_or_none,
)

_ROLES = {"user": "user", "bot": "assistant"}


def matches(doc: Mapping[str, Any]) -> bool:
    """A tracker: `sender_id` and its `events`."""
    head = next(iter(array(doc.get("events"))), None)
    return "sender_id" in doc and isinstance(head, Mapping) and isinstance(head.get("event"), str)


def is_event(doc: Mapping[str, Any]) -> bool:
    """One event of the broker stream."""
    return isinstance(doc.get("event"), str) and id_or_none(doc.get("sender_id")) is not None


def conversation_of(doc: Mapping[str, Any]) -> str | None:
    return id_or_none(doc.get("sender_id"))


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="rasa-tracker")
    draft.own_id = id_or_none(doc.get("sender_id"))
    for index, event in enumerate(need_list(doc.get("events"), "events")):
        if not isinstance(event, Mapping):
            raise InvalidConversation(f"events[{index}] is not an event object")
        draft.messages.extend(event_messages(event, f"events[{index}]"))
    return draft


def event_messages(event: Mapping[str, Any], where: str) -> list[Message]:
    kind = event.get("event")
    role = _ROLES.get(kind) if isinstance(kind, str) else None
    if role is None:
        return []  # bookkeeping, not dialogue
    pieces = _media(obj(event.get("data"))) if role == "assistant" else []
    text = event.get("text")
    if isinstance(text, str) and text.strip():
        pieces.append(text)
    if not pieces:
        return []
    message_id = id_or_none(event.get("message_id"))
    return [Message(role, "\n".join(pieces), time_or_none(event.get("timestamp")), id=message_id)]


def _media(data: Mapping[str, Any]) -> list[str]:
    shown = []
    if string(data.get("image")):
        shown.append(parts.image(data["image"]))
    if data.get("attachment"):
        shown.append(parts.file())
    buttons = [obj(b).get("title") for b in array(data.get("buttons") or data.get("quick_replies"))]
    titles = [t for t in buttons if isinstance(t, str) and t]
    if titles:
        shown.append(f"[buttons: {' | '.join(titles)}]")
    if data.get("custom"):
        shown.append("[custom]")
    return shown


READER = Reader("rasa", matches, read)
