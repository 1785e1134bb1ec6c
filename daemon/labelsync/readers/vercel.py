"""Vercel AI SDK `UIMessage[]` (AI SDK 5; 4's `toolInvocation` parts too).

The SDK's persistence guide saves one chat per file, named after the chat id:
a bare array of messages (or `{"id", "messages"}`), identified by the file name.
Each message is `{id, role, parts}`; parts are typed:

    text, reasoning           the text, [thinking] TEXT
    file                      [image] by `mediaType`, else [file: NAME]
    tool-NAME, dynamic-tool   the call (`input`), and its result in the same part:
                              `output` (state output-available) or `errorText`
                              (output-error) becomes a `tool` message
    source-url, -document     [source: TITLE — URL]
    step-start                a step marker: nothing to show
    data-*, anything else     [TYPE], with a warning
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import parts
from labelsync.readers.base import (
    ROLE_ALIASES,
    Draft,
    Options,
    Reader,
    array,
    id_or_none,
    obj,
    string,
    time_or_none,
)


def matches(doc: Mapping[str, Any]) -> bool:
    head = next(iter(array(doc.get("messages"))), None)
    return isinstance(head, Mapping) and is_message(head)


def is_message(item: Mapping[str, Any]) -> bool:
    head = next(iter(array(item.get("parts"))), None)
    return (
        isinstance(item.get("role"), str)
        and isinstance(head, Mapping)
        and isinstance(head.get("type"), str)
    )


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    draft = read_items(array(doc.get("messages")), options)
    draft.own_id = id_or_none(doc.get("id"))
    return draft


def read_items(items: list[Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="vercel-ai")
    tools = parts.ToolNames()
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("role"), str):
            raise InvalidConversation(f'[{index}] is not a UI message with a "role"')
        raw_role = str(item["role"])
        role = ROLE_ALIASES.get(raw_role.lower(), raw_role)
        if role == "assistant":
            tools.new_turn()
        rendered = parts.Rendered()
        for attachment in array(item.get("experimental_attachments")):  # AI SDK 4
            attachment = obj(attachment)
            rendered.add(parts.attachment(attachment.get("name"), attachment.get("contentType")))
        message_parts = item.get("parts")
        if not isinstance(message_parts, list):
            message_parts = [{"type": "text", "text": item.get("content")}]
        for number, part in enumerate(message_parts):
            _part(obj(part), f"[{index}].parts[{number}]", tools, rendered)
        draft.warnings.extend(rendered.warnings)
        metadata = obj(item.get("metadata"))
        model = string(metadata.get("model")) if role == "assistant" else None
        when = time_or_none(metadata.get("createdAt") or item.get("createdAt"))
        for part_role, text in parts.split(role, rendered):
            reply = model if part_role == "assistant" else None
            draft.messages.append(
                Message(part_role, text, when, model=reply, id=id_or_none(item.get("id")))
            )
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else None
    return draft


def _part(part: Mapping[str, Any], where: str, tools: parts.ToolNames, out: parts.Rendered) -> None:
    kind = part.get("type")
    kind = kind if isinstance(kind, str) else ""
    if kind == "text":
        text = part.get("text")
        out.add(text if isinstance(text, str) else "")
    elif kind == "reasoning":
        out.add(parts.thinking(part.get("text", part.get("reasoning"))))
    elif kind == "file":
        out.add(parts.attachment(part.get("filename"), part.get("mediaType"), part.get("url")))
    elif kind == "tool-invocation":  # AI SDK 4
        call = obj(part.get("toolInvocation"))
        result = {"output": call["result"], "state": "output-available"} if "result" in call else {}
        _tool(call.get("toolName"), {**call, "input": call.get("args"), **result}, tools, out)
    elif kind.startswith("tool-") or kind == "dynamic-tool":
        name = part.get("toolName") if kind == "dynamic-tool" else kind.removeprefix("tool-")
        _tool(name, part, tools, out)
    elif kind in ("source-url", "source-document", "source"):
        source = obj(part.get("source")) or part  # AI SDK 4 nests it
        out.add(parts.search_result(source.get("title"), source.get("url"), label="source"))
    elif kind != "step-start":
        parts.unknown(kind or "part", where, out)


def _tool(name: Any, part: Mapping[str, Any], tools: parts.ToolNames, out: parts.Rendered) -> None:
    call_id = part.get("toolCallId")
    out.add(tools.call(call_id, name, part.get("input")))
    label = tools.result_name(call_id, name)
    if part.get("state") == "output-error" or "errorText" in part:
        error = part.get("errorText")
        out.result(parts.tool_result(label, str(error or ""), error=True))
    elif "output" in part:
        out.result(parts.tool_result(label, parts.args_text(part.get("output"))))


READER = Reader("vercel", matches, read)
