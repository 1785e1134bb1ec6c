"""Claude.ai data export (`conversations.json`): `chat_messages` of `sender` + content blocks.

- Branches: every message of every branch is in the flat list, linked by
  `parent_message_uuid`, and the export does not say which branch was shown.
  The dialogue is the most recent leaf walked back to the root (what the UI
  shows after an edit or a retry). Older exports have no parent links: file order.
- Content: the `content` blocks when there are any; the `text` field is only a
  fallback, as it holds "This block is not supported" placeholders for tools.
- Unlike the API, one assistant message holds its `tool_use` AND `tool_result`
  blocks, with text before and after: it is split around each result.
- `attachments` (text extracted from uploads) and `files` (images, other
  uploads) come first, as the UI shows them above the text.
- `token_budget` blocks are bookkeeping between blocks, not content.
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
    string,
    text_or_none,
    time_or_none,
)

_ROLES = {"human": "user", "user": "user", "assistant": "assistant"}
_BOOKKEEPING = {"token_budget"}


def matches(doc: Mapping[str, Any]) -> bool:
    return "chat_messages" in doc


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    chat = [obj(m) for m in need_list(doc.get("chat_messages"), "chat_messages")]
    draft = Draft(messages=[], shape="claude-export", final=True)
    draft.own_id = id_or_none(doc.get("uuid"))
    draft.title = text_or_none(doc.get("name"))
    draft.timestamp = time_or_none(doc.get("created_at"))
    draft.model = string(doc.get("model"))
    tools = parts.ToolNames()
    for index in _branch(chat):
        message = chat[index]
        sender = message.get("sender")
        role = _ROLES.get(sender, sender) if isinstance(sender, str) else None
        if role is None:
            raise InvalidConversation(f'chat_messages[{index}] has no "sender" string')
        if role == "assistant":
            tools.new_turn()
        rendered = _content(message, f"chat_messages[{index}]", tools)
        draft.warnings.extend(rendered.warnings)
        rendered.lead(_uploads(message))
        when = time_or_none(message.get("created_at"))
        for part_role, text in parts.split(role, rendered):
            draft.messages.append(
                Message(part_role, text, timestamp=when, id=id_or_none(message.get("uuid")))
            )
    return draft


def _branch(chat: list[Mapping[str, Any]]) -> list[int]:
    """Indexes of the shown branch, root first: the most recent leaf's ancestry."""
    by_id = {m["uuid"]: i for i, m in enumerate(chat) if isinstance(m.get("uuid"), str)}
    parent = {i: m.get("parent_message_uuid") for i, m in enumerate(chat)}
    if not any(isinstance(p, str) and p in by_id for p in parent.values()):
        return list(range(len(chat)))  # no links (older exports): file order
    has_child = {by_id[p] for p in parent.values() if isinstance(p, str) and p in by_id}
    leaves = [i for i in range(len(chat)) if i not in has_child]
    if not leaves:
        return list(range(len(chat)))  # a cycle: no leaf to start from

    def recency(i: int) -> tuple[str, int]:
        when = chat[i].get("created_at")
        return (when if isinstance(when, str) else "", i)

    path: list[int] = []
    index: int | None = max(leaves, key=recency)
    while index is not None and index not in path:
        path.append(index)
        link = parent[index]
        index = by_id.get(link) if isinstance(link, str) else None
    return path[::-1]


def _content(message: Mapping[str, Any], where: str, tools: parts.ToolNames) -> parts.Rendered:
    content = array(message.get("content"))
    kept = [b for b in content if string(obj(b).get("type")) not in _BOOKKEEPING]
    if kept:
        return blocks.render(kept, f"{where}.content", tools)
    text = message.get("text")
    return blocks.render(text if isinstance(text, str) else None, f"{where}.text", tools)


def _uploads(message: Mapping[str, Any]) -> list[str]:
    shown = [parts.file(obj(a).get("file_name")) for a in array(message.get("attachments"))]
    for upload in array(message.get("files")):
        upload = obj(upload)
        shown.append(parts.attachment(upload.get("file_name"), upload.get("file_type")))
    return shown


READER = Reader("claude", matches, read)
