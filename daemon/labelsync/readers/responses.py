"""OpenAI Responses API: a request's `instructions` + `input`, a response's `output`.

`input` is a string (one user message) or a list of items: typed ones
(`message`, `reasoning`, `function_call`, `function_call_output`, built-in
tool calls) and typeless `{role, content}` messages. One assistant turn is
several items in a row (reasoning, then calls, then its message): they are
merged into one assistant message, each call output being a `tool` message.

A request chained with `previous_response_id`, or bound to a Conversations
API `conversation`, holds only the new turn: the rest lives on OpenAI's
servers and cannot be rebuilt from the file. The `conversation` id is kept as
the conversation's own id, so its turns from several lines make versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import blocks, parts
from labelsync.readers.base import (
    ROLE_ALIASES,
    Draft,
    Options,
    Reader,
    array,
    id_or_none,
    obj,
    string,
)

_OUTPUTS = {
    "function_call_output",
    "custom_tool_call_output",
    "local_shell_call_output",
    "computer_call_output",
    "mcp_approval_response",
}
_CALLS = {
    "function_call",
    "custom_tool_call",
    "local_shell_call",
    "computer_call",
    "mcp_call",
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_list_tools",
    "mcp_approval_request",
}
ITEM_TYPES = _OUTPUTS | _CALLS | {"message", "reasoning", "item_reference"}


def matches(doc: Mapping[str, Any]) -> bool:
    request = isinstance(doc.get("input"), (str, list)) and any(
        k in doc for k in ("model", "instructions", "previous_response_id", "conversation")
    )
    response = doc.get("object") == "response" and isinstance(doc.get("output"), list)
    return request or response


def is_item(item: Mapping[str, Any]) -> bool:
    return string(item.get("type")) in ITEM_TYPES


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="openai-responses")
    conversation = doc.get("conversation")
    draft.own_id = id_or_none(conversation) or id_or_none(obj(conversation).get("id"))
    instructions = doc.get("instructions")
    if isinstance(instructions, str) and instructions.strip():
        draft.messages.append(Message("system", instructions))
    items = doc.get("input")
    tools = parts.ToolNames()
    if isinstance(items, str):
        draft.messages.append(Message("user", items))
    else:
        append_items(array(items), "input", draft, tools)
    model = string(doc.get("model"))
    if isinstance(doc.get("output"), list):
        append_items(doc["output"], "output", draft, tools, model=model)
    draft.model = model
    return draft


def read_items(items: list[Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="openai-responses")
    append_items(items, "", draft, parts.ToolNames())
    return draft


def append_items(
    items: list[Any],
    where: str,
    draft: Draft,
    tools: parts.ToolNames,
    model: str | None = None,
) -> None:
    """Append Responses items to a draft; `model` names the model that wrote them."""
    turn: parts.Rendered | None = None  # the assistant turn being gathered
    said = False  # the turn already holds a message: another one starts a new turn

    def close() -> None:
        nonlocal turn, said
        if turn is not None:
            draft.warnings.extend(turn.warnings)
            for role, text in parts.split("assistant", turn):
                draft.messages.append(Message(role, text, model=model if role != "tool" else None))
        turn, said = None, False

    for index, item in enumerate(items):
        place = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidConversation(f"{place} is not a Responses item object")
        kind = item.get("type")
        raw_role = item.get("role")
        if kind in (None, "message") and isinstance(raw_role, str):
            role = ROLE_ALIASES.get(raw_role.lower(), raw_role)
            if role == "assistant":
                if turn is None or said:
                    close()
                    turn = parts.Rendered()
                    tools.new_turn()
                turn.extend(blocks.render(item.get("content"), place, tools))
                said = True
                continue
            close()
            rendered = blocks.render(item.get("content"), place, tools)
            draft.warnings.extend(rendered.warnings)
            for part_role, text in parts.split(role, rendered):
                draft.messages.append(Message(part_role, text, id=id_or_none(item.get("id"))))
            continue
        if string(kind) in _OUTPUTS:
            close()
            draft.messages.append(
                Message("tool", _output(item, tools), id=id_or_none(item.get("id")))
            )
            continue
        if turn is None:
            turn = parts.Rendered()
            tools.new_turn()
        _assistant_item(item, kind, place, tools, turn)
    close()


def _assistant_item(
    item: Mapping[str, Any], kind: Any, place: str, tools: parts.ToolNames, turn: parts.Rendered
) -> None:
    if kind == "reasoning":
        # The summary is what OpenAI returns; open models' reasoning comes as `content`.
        shown = array(item.get("summary")) or array(item.get("content"))
        for text in (obj(s).get("text") for s in shown):
            if isinstance(text, str) and text:
                turn.add(parts.thinking(text))
        return
    if kind in ("function_call", "custom_tool_call", "mcp_call"):
        args = item.get("arguments", item.get("input"))
        turn.add(tools.call(item.get("call_id") or item.get("id"), item.get("name"), args))
        if kind == "mcp_call" and item.get("output") is not None:
            turn.result(
                parts.tool_result(string(item.get("name")), parts.args_text(item["output"]))
            )
        return
    if kind == "web_search_call":
        turn.add(tools.call(item.get("id"), "web_search", obj(item.get("action")) or None))
        return
    if kind == "code_interpreter_call":
        turn.add(parts.code_block(item.get("code"), "python"))
        for output in array(item.get("outputs")):
            logs = obj(output).get("logs")
            turn.add(f"[code result] {logs}" if isinstance(logs, str) else parts.image())
        return
    if kind == "image_generation_call":
        turn.add(parts.image())
        return
    if kind in ("file_search_call", "local_shell_call", "computer_call"):
        args = item.get("queries", item.get("action"))
        turn.add(
            tools.call(item.get("call_id") or item.get("id"), kind.removesuffix("_call"), args)
        )
        return
    parts.unknown(kind if isinstance(kind, str) and kind else "item", place, turn)


def _output(item: Mapping[str, Any], tools: parts.ToolNames) -> str:
    output = item.get("output")
    if isinstance(output, list):  # text and image parts
        text = blocks.render(output, "output", tools).text
    else:
        text = parts.args_text(output) if output is not None else ""
    name = tools.result_name(item.get("call_id"))
    return parts.tool_result(name, text)


READER = Reader("responses", matches, read)
