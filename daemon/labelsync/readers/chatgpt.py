"""ChatGPT data export (`conversations.json`, or `conversations-000.json`, ...).

Each conversation is a tree: `mapping` holds every node (regenerated answers,
edited questions) in no particular order, and `current_node` is the leaf the
user last saw. The dialogue is the path from the root to that leaf. On it:

- hidden nodes (`is_visually_hidden_from_conversation`: the empty system
  prompt, custom instructions) and root nodes without a message are skipped;
- one visible assistant turn is stored as several nodes in a row (thoughts,
  a "Thought for 4s" recap, the answer): they are merged, the recap dropped;
- a node addressed to a tool (`recipient` other than "all") is a tool call,
  the `tool` node after it its result, named by `author.name`.

Uploads listed in `metadata.attachments` come first, unless the image is
already one of the message's parts. An entry without `mapping` (a real export
quirk) is not a conversation: it is reported, the rest of the file is read.
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

_EXTRA = ("is_archived", "is_starred", "gizmo_id", "default_model_slug", "conversation_origin")


def matches(doc: Mapping[str, Any]) -> bool:
    if "mapping" in doc:
        return "current_node" in doc or "conversation_id" in doc or "title" in doc
    # An export entry that lost its tree: say so rather than "no message list".
    return "default_model_slug" in doc and "conversation_id" in doc


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    mapping = doc.get("mapping")
    if not isinstance(mapping, Mapping):
        raise InvalidConversation('a ChatGPT export entry without "mapping": it holds no messages')
    draft = Draft(messages=[], shape="chatgpt-export", final=True)
    draft.own_id = id_or_none(doc.get("conversation_id")) or id_or_none(doc.get("id"))
    draft.title = text_or_none(doc.get("title"))
    draft.timestamp = time_or_none(doc.get("create_time"))
    draft.extra = {k: doc[k] for k in _EXTRA if doc.get(k) is not None}
    tools = parts.ToolNames()
    for node_id in _path(mapping, doc.get("current_node")):
        message = obj(mapping.get(node_id)).get("message")
        if not isinstance(message, Mapping) or _hidden(message):
            continue
        role, text = _message(message, f"mapping.{node_id}", tools, draft.warnings)
        if not text.strip():
            continue
        model = string(obj(message.get("metadata")).get("model_slug"))
        previous = draft.messages[-1] if draft.messages else None
        if role == "assistant" and previous is not None and previous.role == "assistant":
            # One visible turn stored as several nodes (thoughts, then the answer).
            text = f"{previous.content}\n{text}"
            draft.messages.pop()
        draft.messages.append(
            Message(
                role,
                text,
                timestamp=time_or_none(message.get("create_time")),
                model=model if role == "assistant" else None,
                id=id_or_none(message.get("id")),
            )
        )
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else string(doc.get("default_model_slug"))
    return draft


def _path(mapping: Mapping[str, Any], current: Any) -> list[str]:
    """Node ids from the root to the current leaf (the most recent leaf if none is named)."""
    node_id = current if isinstance(current, str) and current in mapping else _latest_leaf(mapping)
    path: list[str] = []
    seen: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        path.append(node_id)
        node_id = obj(mapping[node_id]).get("parent")
    return path[::-1]


def _latest_leaf(mapping: Mapping[str, Any]) -> str | None:
    leaves = [k for k, node in mapping.items() if not array(obj(node).get("children"))]

    def created(key: str) -> float:
        when = obj(obj(mapping[key]).get("message")).get("create_time")
        return float(when) if isinstance(when, (int, float)) else 0.0

    return max(leaves, key=created) if leaves else None


def _hidden(message: Mapping[str, Any]) -> bool:
    metadata = obj(message.get("metadata"))
    return (
        metadata.get("is_visually_hidden_from_conversation") is True
        or metadata.get("is_user_system_message") is True
        or obj(message.get("content")).get("content_type") == "user_editable_context"
    )


def _message(
    message: Mapping[str, Any], where: str, tools: parts.ToolNames, warnings: list[str]
) -> tuple[str, str]:
    author = obj(message.get("author"))
    role: str = author["role"] if isinstance(author.get("role"), str) else "assistant"
    content = obj(message.get("content"))
    kind = content.get("content_type")
    recipient = message.get("recipient")
    if role == "assistant" and isinstance(recipient, str) and recipient not in ("all", ""):
        # Addressed to a tool: code, a search command, JSON arguments.
        tools.new_turn()
        args = (
            content.get("text")
            if isinstance(content.get("text"), str)
            else _parts_text(content, where, tools, warnings)
        )
        return "assistant", tools.call(None, recipient, args)
    if role == "tool":
        name = tools.result_name(None, author.get("name"))
        error = kind == "system_error"
        text = _content_text(content, where, tools, warnings)
        return "tool", parts.tool_result(name, text, error=error)
    if kind == "reasoning_recap":  # "Thought for 4s": chrome of the UI, not reasoning
        return role, ""
    rendered = _content_text(content, where, tools, warnings)
    lead = _attachments(message, content)
    return role, "\n".join([*lead, rendered] if rendered else lead)


def _content_text(
    content: Mapping[str, Any], where: str, tools: parts.ToolNames, warnings: list[str]
) -> str:
    kind = content.get("content_type")
    if kind == "thoughts" and "thoughts" in content:
        return "\n".join(
            parts.thinking(obj(t).get("content"))
            for t in array(content.get("thoughts"))
            if string(obj(t).get("content"))
        )
    if kind in ("text", "multimodal_text") or "parts" in content:
        return _parts_text(content, where, tools, warnings)
    if kind == "code":
        return parts.code_block(content.get("text"), content.get("language"))
    if kind == "tether_browsing_display":
        return str(content.get("result") or "")
    if kind == "tether_quote":
        head = parts.search_result(content.get("title"), content.get("url"))
        return f"{head}\n{content.get('text') or ''}".strip()
    for key in ("text", "result"):  # execution_output, system_error, and their kin
        if isinstance(content.get(key), str):
            return str(content[key])
    name = kind if isinstance(kind, str) and kind else "content"
    warnings.append(f"{where}: unknown block type {name!r} shown as [{name}]")
    return f"[{name}]"


def _parts_text(
    content: Mapping[str, Any], where: str, tools: parts.ToolNames, warnings: list[str]
) -> str:
    pieces: list[str] = []
    for index, part in enumerate(array(content.get("parts"))):
        if isinstance(part, Mapping) and isinstance(part.get("content_type"), str):
            pieces.append(_voice_or_media(part, f"{where}.parts[{index}]", tools, warnings))
        else:
            rendered = blocks.render(part, f"{where}.parts[{index}]", tools)
            warnings.extend(rendered.warnings)
            pieces.append(rendered.text)
    return "\n".join(p for p in pieces if p)


def _voice_or_media(
    part: Mapping[str, Any], where: str, tools: parts.ToolNames, warnings: list[str]
) -> str:
    """Voice mode stores a transcript beside the recording: the annotator reads the
    transcript and sees that audio (or video) was there."""
    kind = part["content_type"]
    if kind == "audio_transcription":
        return str(part.get("text") or "")
    if kind == "audio_asset_pointer":
        return "[audio]"
    if kind == "real_time_user_audio_video_asset_pointer":
        shown = ["[audio]"] if part.get("audio_asset_pointer") else []
        if array(part.get("frames_asset_pointers")) or part.get("video_container_asset_pointer"):
            shown.append("[video]")
        return "\n".join(shown) or "[audio]"
    rendered = blocks.render(part, where, tools)
    warnings.extend(rendered.warnings)
    return rendered.text


def _attachments(message: Mapping[str, Any], content: Mapping[str, Any]) -> list[str]:
    """Uploads not already shown as a part of the message (an image is both, once)."""
    pointers = [
        str(obj(p).get("asset_pointer"))
        for p in array(content.get("parts"))
        if isinstance(obj(p).get("asset_pointer"), str)
    ]
    shown = []
    for upload in array(obj(message.get("metadata")).get("attachments")):
        upload = obj(upload)
        upload_id = string(upload.get("id"))
        if upload_id and any(pointer.endswith(upload_id) for pointer in pointers):
            continue
        shown.append(parts.attachment(upload.get("name"), upload.get("mime_type")))
    return shown


READER = Reader("chatgpt", matches, read)
