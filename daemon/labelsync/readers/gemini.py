"""Gemini API bodies: `contents` of `parts`, and `systemInstruction`.

Both spellings of the REST API are read (camelCase `systemInstruction`,
`functionCall`, `inlineData`; snake_case `system_instruction`,
`function_call`, `inline_data`). A content without `role` is the user's;
`model` is the assistant; a `functionResponse` part is a tool result, whether
its content says `role: "user"` (current API) or `role: "function"` (older
Vertex samples). Thought parts (`thought: true`) are thinking; code the model
ran (`executableCode`) is shown as a fenced block with its result after it.
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
    need_list,
    obj,
    string,
)

_ROLES = {
    "user": "user",
    "model": "assistant",
    "function": "tool",
    "tool": "tool",
    "system": "system",
}


def matches(doc: Mapping[str, Any]) -> bool:
    return "contents" in doc


def is_content(item: Mapping[str, Any]) -> bool:
    """A Gemini `Content`: `parts` whose first part has no "type" (a typed part is Vercel's)."""
    head = next(iter(array(item.get("parts"))), None)
    role = item.get("role")
    return (
        isinstance(head, Mapping)
        and "type" not in head
        and (role is None or string(role) in _ROLES)
        and not ("content" in item or "id" in item)
    )


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    contents = need_list(doc.get("contents"), "contents")
    draft = Draft(messages=[], shape="gemini")
    system = doc.get("systemInstruction", doc.get("system_instruction"))
    if system is not None:
        text = (
            system
            if isinstance(system, str)
            else blocks.render(array(obj(system).get("parts")), "systemInstruction").text
        )
        if text.strip():
            draft.messages.append(Message("system", text))
    append_contents(contents, "contents", draft, parts.ToolNames())
    model = string(doc.get("model"))
    draft.model = model.removeprefix("models/") if model else None
    return draft


def read_items(items: list[Any], options: Options) -> Draft:
    draft = Draft(messages=[], shape="gemini")
    append_contents(items, "", draft, parts.ToolNames())
    return draft


def append_contents(
    contents: list[Any], where: str, draft: Draft, tools: parts.ToolNames, model: str | None = None
) -> None:
    """Append `Content`s to a draft; `model` names the model that wrote them (a response)."""
    for index, content in enumerate(contents):
        if not isinstance(content, Mapping):
            raise InvalidConversation(f"{where}[{index}] is not a Gemini content object")
        raw_role = content.get("role", "user")
        if not isinstance(raw_role, str):
            raise InvalidConversation(f'{where}[{index}] has a "role" that is not a string')
        role = _ROLES.get(raw_role, raw_role)
        if role == "assistant":
            tools.new_turn()
        rendered = blocks.render(array(content.get("parts")), f"{where}[{index}].parts", tools)
        draft.warnings.extend(rendered.warnings)
        for part_role, text in parts.split(role, rendered):
            if role == "tool" and part_role == "tool" and not text.startswith("[tool"):
                text = parts.tool_result(None, text)  # a function role's plain text
            reply = model if part_role == "assistant" else None
            draft.messages.append(Message(part_role, text, model=reply))


READER = Reader("gemini", matches, read)
