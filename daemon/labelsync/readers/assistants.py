"""OpenAI Assistants API thread messages: `{"object": "list", "data": [thread.message, ...]}`.

The API lists a thread's messages NEWEST FIRST by default, so the dialogue is
the list sorted by `created_at` (the order given is kept for equal times).
A message's text is `content[].text.value`; `attachments` name files by id
only (`[file]`), shown before the text; the thread id is the conversation's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import blocks, parts
from labelsync.readers.base import (
    Draft,
    Options,
    Reader,
    array,
    id_or_none,
    need_list,
    obj,
    time_or_none,
)

_ROLES = {"user": "user", "assistant": "assistant"}


def matches(doc: Mapping[str, Any]) -> bool:
    head = obj(next(iter(array(doc.get("data"))), None))
    return doc.get("object") == "list" and is_message(head)


def is_message(item: Mapping[str, Any]) -> bool:
    return item.get("object") == "thread.message"


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    return read_items(need_list(doc.get("data"), "data"), options)


def read_items(items: list[Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="openai-assistants", final=True)
    listed = [obj(m) for m in items]

    def created(pair: tuple[int, Mapping[str, Any]]) -> float:
        when = pair[1].get("created_at")
        return float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else 0.0

    ordered = sorted(enumerate(listed), key=created)
    tools = parts.ToolNames()
    for index, message in ordered:
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidConversation(f'data[{index}] has no "role" string')
        rendered = blocks.render(message.get("content"), f"data[{index}].content", tools)
        draft.warnings.extend(rendered.warnings)
        rendered.lead([parts.file() for _ in array(message.get("attachments"))])
        for part_role, text in parts.split(_ROLES.get(role, role), rendered):
            draft.messages.append(
                Message(
                    part_role,
                    text,
                    timestamp=time_or_none(message.get("created_at")),
                    id=id_or_none(message.get("id")),
                )
            )
        draft.own_id = draft.own_id or id_or_none(message.get("thread_id"))
    if ordered:
        draft.timestamp = time_or_none(ordered[0][1].get("created_at"))
    return draft


READER = Reader("assistants", matches, read)
