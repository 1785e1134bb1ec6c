"""LangChain message dicts: `messages_to_dict` (`{"type", "data"}`) and `dumpd` (`lc: 1`).

- `type` says the role (`human`, `ai`, `system`, `tool`, `function`, `chat`
  with its own `role`); `data` (or the constructor's `kwargs`) holds the message.
- An AI message's calls are in `tool_calls` (parsed) AND, for OpenAI models,
  again in `additional_kwargs.tool_calls` (raw): the parsed ones are shown,
  the raw ones only when there are no parsed ones.
- `SQLChatMessageHistory` rows (`session_id`, `message` as a JSON string,
  read back in `id` order) are message-per-line events: see `is_row`.
"""

from __future__ import annotations

import json
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
)

_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "developer": "system",
}
_CLASSES = {
    "HumanMessage": "human",
    "AIMessage": "ai",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "function",
    "ChatMessage": "chat",
}


def matches(doc: Mapping[str, Any]) -> bool:
    """An object around a list of LangChain messages (`{"messages": [...]}`)."""
    head = next(iter(array(doc.get("messages"))), None)
    return isinstance(head, Mapping) and is_message(head)


def is_message(item: Mapping[str, Any]) -> bool:
    return _unwrap(item) is not None


def _unwrap(item: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(type, fields) of a LangChain message dict in either serialised form."""
    kind = item.get("type")
    if isinstance(kind, str) and isinstance(item.get("data"), Mapping):
        kind = kind.removesuffix("MessageChunk").lower()  # "AIMessageChunk" -> "ai"
        if kind in _ROLES or kind == "chat":
            return kind, item["data"]
    path = item.get("id")
    if item.get("lc") == 1 and kind == "constructor" and isinstance(path, list) and path:
        name = str(path[-1]).removesuffix("Chunk")
        if name in _CLASSES:
            return _CLASSES[name], obj(item.get("kwargs"))
    return None


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    return read_items(array(doc.get("messages")), options)


def read_items(items: list[Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="langchain")
    tools = parts.ToolNames()
    for index, item in enumerate(items):
        draft.messages.extend(message_of(item, f"[{index}]", tools, draft.warnings))
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else None
    return draft


def message_of(item: Any, where: str, tools: parts.ToolNames, warnings: list[str]) -> list[Message]:
    unwrapped = _unwrap(item) if isinstance(item, Mapping) else None
    if unwrapped is None:
        raise InvalidConversation(f"{where} is not a LangChain message dict")
    kind, data = unwrapped
    role = _ROLES.get(kind) or (string(data.get("role")) or "assistant")
    role = _ROLES.get(role, role) if kind == "chat" else role
    if role == "assistant":
        tools.new_turn()
    rendered = blocks.render(data.get("content"), f"{where}.content", tools)
    warnings.extend(rendered.warnings)
    for call in _calls(data, tools):
        rendered.add(call)
    message_id = id_or_none(data.get("id"))
    if role == "tool":
        name = tools.result_name(data.get("tool_call_id"), data.get("name"))
        error = data.get("status") == "error"
        text = "\n".join(t for _, t in rendered.segments)
        return [Message("tool", parts.tool_result(name, text, error=error), id=message_id)]
    metadata = obj(data.get("response_metadata"))
    model = string(metadata.get("model_name")) or string(metadata.get("model"))
    return [
        Message(r, text, model=model if r == "assistant" else None, id=message_id)
        for r, text in parts.split(role, rendered)
    ]


def _calls(data: Mapping[str, Any], tools: parts.ToolNames) -> list[str]:
    parsed = [obj(c) for c in array(data.get("tool_calls"))]
    if parsed:
        return [tools.call(c.get("id"), c.get("name"), c.get("args")) for c in parsed]
    raw = obj(data.get("additional_kwargs"))
    calls = []
    for call in array(raw.get("tool_calls")):
        function = obj(obj(call).get("function"))
        calls.append(
            tools.call(obj(call).get("id"), function.get("name"), function.get("arguments"))
        )
    legacy = obj(raw.get("function_call"))
    if legacy:
        calls.append(tools.call(None, legacy.get("name"), legacy.get("arguments")))
    return calls


# SQLChatMessageHistory and its kin: one row per message, `message` as JSON text.
def is_row(doc: Mapping[str, Any]) -> bool:
    return "session_id" in doc and _row_message(doc) is not None


def _row_message(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    message = doc.get("message")
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            message = json.loads(message)
        except ValueError:
            return None
    return message if isinstance(message, Mapping) and is_message(message) else None


def row_messages(doc: Mapping[str, Any], where: str) -> list[Message]:
    message = _row_message(doc)
    if message is None:
        raise InvalidConversation(f'{where}: "message" is not a LangChain message')
    return message_of(message, where, parts.ToolNames(), [])


READER = Reader("langchain", matches, read)
