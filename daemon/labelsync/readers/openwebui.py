"""Open WebUI export ("Export All Chats", or one chat): `chat.history.messages` and `currentId`.

- `history.messages` maps ids to messages linked by `parentId`; `currentId` is
  the message the user last saw, which may be on an OLDER branch (after
  switching back to it): the dialogue is `currentId` walked back to its root.
  Without a `currentId`, the most recent leaf; without history, `chat.messages`.
- Open WebUI serialises reasoning and tool calls as HTML inside `content`:
  `<details type="reasoning">` with `> `-quoted lines, and
  `<details type="tool_calls" name=... arguments=... result=...>` whose
  attributes are HTML-escaped JSON (arguments are JSON text inside that JSON).
  The same call is repeated in the newer `output` items and in `chat.messages`:
  only `content` is read, so it is shown once.
- `files` (images as data URLs, documents) come first.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import blocks, parts, responses
from labelsync.readers.base import (
    ROLE_ALIASES,
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

_DETAILS = re.compile(r"<details(?P<attrs>[^>]*)>(?P<body>.*?)</details>", re.DOTALL)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_SUMMARY = re.compile(r"<summary>.*?</summary>", re.DOTALL)


def matches(doc: Mapping[str, Any]) -> bool:
    chat = obj(doc.get("chat")) or doc
    return isinstance(chat.get("history"), Mapping) and (
        "currentId" in obj(chat["history"]) or "messages" in obj(chat["history"])
    )


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    chat = obj(doc.get("chat")) or doc
    history = obj(chat.get("history"))
    draft = Draft(messages=[], shape="openwebui-export", final=True)
    draft.own_id = id_or_none(doc.get("id")) or id_or_none(chat.get("id"))
    draft.title = text_or_none(doc.get("title")) or text_or_none(chat.get("title"))
    draft.timestamp = time_or_none(doc.get("created_at") or chat.get("timestamp"))
    nodes = obj(history.get("messages"))
    dialogue = [obj(nodes[k]) for k in _branch(nodes, history.get("currentId"))]
    if not dialogue:
        dialogue = [obj(m) for m in array(chat.get("messages"))]
    tools = parts.ToolNames()
    for index, message in enumerate(dialogue):
        raw_role = message.get("role")
        if not isinstance(raw_role, str):
            raise InvalidConversation(f'history message {index} has no "role" string')
        role = ROLE_ALIASES.get(raw_role.lower(), raw_role)
        model = string(message.get("model")) if role == "assistant" else None
        output = array(message.get("output"))
        if role == "assistant" and output:
            # Newer versions keep the reply as Responses items: calls with their
            # names, arguments and results, which the HTML in `content` may lack.
            responses.append_items(output, f"message {index}.output", draft, tools, model)
            continue
        rendered = _content(message.get("content"), f"message {index}", tools)
        draft.warnings.extend(rendered.warnings)
        rendered.lead(_files(message))
        for part_role, text in parts.split(role, rendered):
            own = part_role == role
            draft.messages.append(
                Message(
                    part_role,
                    text,
                    timestamp=time_or_none(message.get("timestamp")),
                    model=model if own else None,
                    feedback=_rating(message.get("annotation")) if own else None,
                    id=id_or_none(message.get("id")),
                )
            )
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else string(next(iter(array(chat.get("models"))), None))
    return draft


def _branch(nodes: Mapping[str, Any], current: Any) -> list[str]:
    if not (isinstance(current, str) and current in nodes):
        leaves = [k for k, m in nodes.items() if not array(obj(m).get("childrenIds"))]
        current = max(leaves, key=lambda k: _stamp(nodes[k]), default=None)
    path: list[str] = []
    while isinstance(current, str) and current in nodes and current not in path:
        path.append(current)
        current = obj(nodes[current]).get("parentId")
    return path[::-1]


def _stamp(node: Any) -> float:
    when = obj(node).get("timestamp")
    return float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else 0.0


def _content(content: Any, where: str, tools: parts.ToolNames) -> parts.Rendered:
    if not isinstance(content, str):
        return blocks.render(content, where, tools)
    out = parts.Rendered()
    position = 0
    for found in _DETAILS.finditer(content):
        out.add(content[position : found.start()].strip())
        position = found.end()
        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(found["attrs"])}
        body = html.unescape(_SUMMARY.sub("", found["body"])).strip()
        kind = attrs.get("type", "details")
        if kind == "reasoning":
            lines = [
                line[1:].lstrip() if line.startswith(">") else line for line in body.split("\n")
            ]
            out.add(parts.thinking("\n".join(lines).strip()))
        elif kind == "tool_calls":
            name = attrs.get("name")
            if name or "arguments" in attrs:
                out.add(tools.call(attrs.get("id"), name, _decoded(attrs.get("arguments"))))
            result = _decoded(attrs.get("result", body or None))
            if result is not None:  # older versions keep only the result, in the body
                name = tools.result_name(attrs.get("id"), name)
                out.result(parts.tool_result(name, parts.args_text(result)))
        else:
            parts.unknown(kind, where, out)
    out.add(content[position:].strip())
    return out


def _decoded(value: str | None) -> Any:
    """An attribute holding JSON (the arguments: JSON text whose value is JSON text)."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _files(message: Mapping[str, Any]) -> list[str]:
    shown = []
    for item in array(message.get("files")):
        item = obj(item)
        meta = obj(obj(item.get("file")).get("meta"))
        if item.get("type") == "image":
            shown.append(parts.image(item.get("url")))
        else:
            name = item.get("name") or obj(item.get("file")).get("filename")
            shown.append(parts.attachment(name, meta.get("content_type")))
    return shown


def _rating(annotation: Any) -> dict[str, Any] | None:
    """Open WebUI's thumbs (`annotation.rating`: 1 or -1) as the contract's score (1 or 0)."""
    rating = obj(annotation).get("rating")
    if rating not in (1, -1) or isinstance(rating, bool):
        return None
    feedback: dict[str, Any] = {"score": 1 if rating == 1 else 0}
    comment = obj(annotation).get("comment")
    if isinstance(comment, str) and comment:
        feedback["comment"] = comment
    return feedback


READER = Reader("openwebui", matches, read)
