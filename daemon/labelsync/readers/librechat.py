"""LibreChat conversation export: one conversation per file, as a tree or a flat list.

- `messagesTree` (or `messages` with `recursive: true`) nests replies in
  `children`; `messages` with `recursive: false` is flat, linked by
  `parentMessageId` (`00000000-...` for a root). Either way the file does not
  say which branch was shown: LibreChat's UI shows the LAST sibling by
  default, so the dialogue follows the last root and the last child down.
- The role is `isCreatedByUser`; `sender` is only a display label ("GPT-4",
  an agent's name) and is never read as a role.
- Agent messages keep their parts in `content` (`text`, `think`, `tool_call`
  with its `output` inside the call, images, `error`) while `text` is empty:
  the parts win when there are any.
- `options.promptPrefix` is the conversation's system prompt: shown first.
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
    obj,
    string,
    text_or_none,
    time_or_none,
)

NO_PARENT = "00000000-0000-0000-0000-000000000000"


def matches(doc: Mapping[str, Any]) -> bool:
    if "conversationId" not in doc:
        return False
    if "messagesTree" in doc or "recursive" in doc:
        return True
    head = obj(next(iter(array(doc.get("messages"))), None))
    return "isCreatedByUser" in head or "messageId" in head


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    raw = doc.get("messagesTree") if "messagesTree" in doc else doc.get("messages")
    if not isinstance(raw, list):
        raise InvalidConversation('a LibreChat export without a "messagesTree" or "messages" array')
    draft = Draft(messages=[], shape="librechat-export", final=True)
    draft.own_id = id_or_none(doc.get("conversationId"))
    draft.title = text_or_none(doc.get("title"))
    settings = obj(doc.get("options"))
    prompt = settings.get("promptPrefix")
    if isinstance(prompt, str) and prompt.strip():
        draft.messages.append(Message("system", prompt))
    tools = parts.ToolNames()
    shown = _branch(_flatten(raw))
    for index, message in enumerate(shown):
        role = "user" if message.get("isCreatedByUser") is True else "assistant"
        if role == "assistant":
            tools.new_turn()
        content = array(message.get("content"))
        rendered = blocks.render(
            content if content else message.get("text"), f"message {index}", tools
        )
        draft.warnings.extend(rendered.warnings)
        rendered.lead(_files(message))
        model = string(message.get("model")) if role == "assistant" else None
        for part_role, text in parts.split(role, rendered):
            own = part_role == role
            draft.messages.append(
                Message(
                    part_role,
                    text,
                    timestamp=time_or_none(message.get("createdAt")),
                    model=model if own else None,
                    feedback=_rating(message.get("feedback")) if own else None,
                    id=id_or_none(message.get("messageId")),
                )
            )
    first = shown[0] if shown else {}
    draft.timestamp = time_or_none(doc.get("createdAt") or first.get("createdAt"))
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else string(settings.get("model"))
    return draft


def _flatten(raw: list[Any]) -> list[tuple[Mapping[str, Any], Any]]:
    """Every message with its parent's id, tree or flat, parents before their children."""
    out: list[tuple[Mapping[str, Any], Any]] = []
    stack: list[tuple[Mapping[str, Any], Any]] = [(obj(m), None) for m in reversed(raw)]
    while stack:
        message, above = stack.pop()
        parent = message.get("parentMessageId")
        out.append((message, parent if isinstance(parent, str) else above))
        key = message.get("messageId")
        stack.extend((obj(c), key) for c in reversed(array(message.get("children"))))
    return out


def _branch(messages: list[tuple[Mapping[str, Any], Any]]) -> list[Mapping[str, Any]]:
    """The last root, then the last child of each message, as LibreChat's UI shows them."""
    ids = {m.get("messageId") for m, _ in messages if isinstance(m.get("messageId"), str)}
    children: dict[str, list[Mapping[str, Any]]] = {}
    roots: list[Mapping[str, Any]] = []
    for message, parent in messages:
        if isinstance(parent, str) and parent != NO_PARENT and parent in ids:
            children.setdefault(parent, []).append(message)
        else:
            roots.append(message)
    path: list[Mapping[str, Any]] = []
    level = roots
    seen: set[int] = set()
    while level and id(level[-1]) not in seen:
        node = level[-1]
        seen.add(id(node))
        path.append(node)
        key = node.get("messageId")
        level = children.get(key, []) if isinstance(key, str) else []
    return path


def _files(message: Mapping[str, Any]) -> list[str]:
    shown = []
    for item in array(message.get("files")):
        item = obj(item)
        name = item.get("filename") or item.get("filepath")
        shown.append(parts.attachment(name, item.get("type"), item.get("filepath")))
    return shown


def _rating(feedback: Any) -> dict[str, Any] | None:
    """LibreChat's thumbs (`feedback.rating`: "thumbsUp"/"thumbsDown") as a score of 1 or 0."""
    rating = obj(feedback).get("rating")
    score = {"thumbsUp": 1, "thumbsDown": 0}.get(rating) if isinstance(rating, str) else None
    if score is None:
        return None
    comment = obj(feedback).get("text")
    return {
        "score": score,
        **({"comment": comment} if isinstance(comment, str) and comment else {}),
    }


READER = Reader("librechat", matches, read)
