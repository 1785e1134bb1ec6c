"""The family most bots write: an object holding a list of role + content messages.

Covers labelsync's own contract and the Chainlit tutorial logger, OpenAI Chat
Completions bodies and fine-tuning lines (content parts, `tool_calls`, `tool`
messages, `refusal`), Anthropic Messages bodies (top-level `system`, content
blocks with `tool_use`, `tool_result`, images, thinking), Ollama `/api/chat`
bodies (`images`, `thinking`, `tool_name`), ShareGPT (`conversations`,
`from`/`value`, `function_call`/`observation` turns, `<image>` tokens), LMSYS-Chat
and WildChat rows (`conversation`). Which fields are read is configurable with
dotted paths (LABELSYNC_MESSAGES_FIELDS, _ROLE_KEYS, _CONTENT_KEYS) and a role map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labelsync.contract import CONTRACT, InvalidConversation, Message, json_type
from labelsync.readers import blocks, parts
from labelsync.readers.base import (
    ROLE_ALIASES,
    SKIP,
    Draft,
    Options,
    Reader,
    array,
    first,
    id_or_none,
    need_list,
    obj,
    string,
    text_or_none,
    time_or_none,
)

# Top-level fields this reader turns into the conversation itself; the rest go to meta.
_CONSUMED = {"model", "timestamp", "ended", "turn_count", "contract", "system", "title"}
_TIME_KEYS = ("timestamp", "created_at", "createdAt", "create_time", "time", "ts")
_DEFAULT = Options()
_DATASETS = {"sharegpt", "lmsys", "wildchat"}  # rows that cannot grow: final
_ANTHROPIC_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "document"}
# LLaMA-Factory's ShareGPT rows put media tokens in the text, the files beside it.
_MEDIA_TOKENS = {
    "images": ("<image>", "[image]"),
    "videos": ("<video>", "[video]"),
    "audios": ("<audio>", "[audio]"),
}


def matches(doc: Mapping[str, Any]) -> bool:
    # Any message field, even of the wrong type: this reader then says what is wrong with it.
    return first(doc, _DEFAULT.messages_fields) is not None


def matches_configured(options: Options) -> Any:
    """With the user's own fields set, this reader is tried first, on their paths."""
    return lambda doc: first(doc, options.messages_fields) is not None


@dataclass
class _Context:
    """What reading one message list needs to remember from message to message."""

    options: Options
    tools: parts.ToolNames = field(default_factory=parts.ToolNames)
    warnings: list[str] = field(default_factory=list)
    tokens: tuple[tuple[str, str], ...] = ()  # media tokens to show as placeholders
    model: str | None = None  # the model that wrote every reply (dataset rows)


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    found = first(doc, options.messages_fields)
    if found is None:
        wanted = " or ".join(f'"{k}"' for k in options.messages_fields)
        raise InvalidConversation(f"no message list: expected a {wanted} array")
    key, raw = found
    raw_messages = need_list(raw, key)
    shape = _shape(doc, key)
    draft = Draft(messages=[], shape=shape)
    system = doc.get("system")
    if system is not None and "system" not in options.messages_fields:
        rendered = blocks.render(system, "system")
        if rendered.text.strip():
            draft.messages.append(Message("system", rendered.text))
    context = _Context(options)
    context.tokens = tuple(token for k, token in _MEDIA_TOKENS.items() if array(doc.get(k)))
    if shape in ("lmsys", "wildchat"):
        context.model = text_or_none(doc.get("model"))
    read_list(raw_messages, key, options, draft, context)
    draft.model = text_or_none(doc.get("model"))
    draft.timestamp = time_or_none(doc.get("timestamp"))
    draft.ended = doc.get("ended") is True
    draft.title = text_or_none(doc.get("title"))
    draft.final = shape in _DATASETS
    if shape == "wildchat":  # its id is a hash of the content: the same rows are one
        draft.own_id = id_or_none(doc.get("conversation_hash"))
    top = key.split(".", 1)[0]
    draft.extra = {k: v for k, v in doc.items() if k not in _CONSUMED and k != top}
    return draft


def read_list(
    raw_messages: list[Any],
    key: str,
    options: Options,
    draft: Draft,
    context: _Context | None = None,
) -> None:
    """Append a message list to the draft (a tool result may become a message of its own)."""
    context = context or _Context(options)
    for index, item in enumerate(raw_messages):
        draft.messages.extend(_messages(item, f"{key}[{index}]", context))
    draft.warnings.extend(context.warnings)


# Keys that make a message more than "role + text": such messages take the full path.
_EXTRAS = ("tool_calls", "function_call", "images", "thinking", "refusal")
_PLAIN_ROLES = {"user", "assistant", "system"}


def _plain(item: Any, context: _Context) -> Message | None:
    """The common case, fast: {"role": "user", "content": "text"} and nothing special.

    Returns the same Message the full path would, or None to take the full path.
    A backfill reads millions of these; the full path costs ~3x more per message.
    """
    if type(item) is not dict or context.tokens or context.options.role_map:
        return None
    role, content = item.get("role"), item.get("content")
    if type(role) is not str or type(content) is not str or not content.strip():
        return None
    if context.options.role_keys[0] != "role" or context.options.content_keys[0] != "content":
        return None
    role = ROLE_ALIASES.get(role.strip().lower())
    if role not in _PLAIN_ROLES or any(key in item for key in _EXTRAS):
        return None
    if role == "assistant":
        context.tools.new_turn()
    model = item.get("model")
    return Message(
        role,
        content,
        timestamp=next((time_or_none(item[k]) for k in _TIME_KEYS if k in item), None),
        feedback=_feedback(item["feedback"]) if "feedback" in item else None,
        model=text_or_none(model) or (context.model if role == "assistant" else None),
        provider=text_or_none(item.get("provider")),
        id=id_or_none(item.get("id") or item.get("message_id")),
    )


def _messages(item: Any, where: str, context: _Context, fast: bool = True) -> list[Message]:
    plain = _plain(item, context) if fast else None
    if plain is not None:
        return [plain]
    options = context.options
    if not isinstance(item, Mapping):
        raise InvalidConversation(f"{where} is a JSON {json_type(item)}, expected an object")
    found_role = first(item, options.role_keys)
    if found_role is None or not isinstance(found_role[1], str) or not found_role[1].strip():
        wanted = " or ".join(f'"{k}"' for k in options.role_keys)
        raise InvalidConversation(f"{where} has no {wanted} string")
    raw_role = found_role[1].strip()
    role = options.role(raw_role)
    if role == SKIP:
        return []
    found_content = first(item, options.content_keys)
    if role == "assistant" or raw_role.lower() == "function_call":
        context.tools.new_turn()
    if raw_role.lower() == "function_call" and found_content is not None:
        role, rendered = "assistant", _sharegpt_call(found_content[1], context.tools)
    elif found_content is None and not _has_extras(item):
        if not any(k in item for k in options.content_keys):
            wanted = " or ".join(f'"{k}"' for k in options.content_keys)
            raise InvalidConversation(f"{where} has no {wanted}")
        rendered = parts.Rendered()  # an explicit null: nothing was said
    else:
        content = found_content[1] if found_content else None
        rendered = blocks.render(_media_tokens(content, context.tokens), where, context.tools)
    context.warnings.extend(rendered.warnings)
    # Attachments and thinking kept beside the content come first, calls after it.
    lead = [parts.image() for _ in array(item.get("images"))]  # Ollama: base64 images
    if isinstance(item.get("thinking"), str) and item["thinking"]:
        lead.append(parts.thinking(item["thinking"]))
    rendered.lead(lead)
    if found_content is None and isinstance(item.get("refusal"), str):
        rendered.add(item["refusal"])
    for call in _tool_calls(item, context.tools):
        rendered.add(call)
    timestamp = next((time_or_none(item[k]) for k in _TIME_KEYS if k in item), None)
    message_id = id_or_none(item.get("id") or item.get("message_id"))
    if role == "tool":
        name = context.tools.result_name(
            item.get("tool_call_id"), item.get("name") or item.get("tool_name")
        )
        text = parts.tool_result(name, "\n".join(t for _, t in rendered.segments))
        return [Message("tool", text, timestamp=timestamp, id=message_id)]
    out: list[Message] = []
    model = text_or_none(item.get("model")) or (context.model if role == "assistant" else None)
    for part_role, text in parts.split(role, rendered):
        own = part_role == role
        out.append(
            Message(
                part_role,
                text,
                feedback=_feedback(item.get("feedback")) if own else None,
                model=model if own else None,
                provider=text_or_none(item.get("provider")) if own else None,
                timestamp=timestamp,
                id=message_id,
            )
        )
    return out


def _has_extras(item: Mapping[str, Any]) -> bool:
    """Content that lives outside the content field."""
    return bool(
        item.get("tool_calls")
        or item.get("function_call")
        or item.get("images")
        or item.get("thinking")
        or item.get("refusal")
    )


def _tool_calls(item: Mapping[str, Any], tools: parts.ToolNames) -> list[str]:
    """OpenAI `tool_calls` / `function_call`, Ollama's and LangChain's `tool_calls`."""
    calls: list[str] = []
    for call in array(item.get("tool_calls")):
        if not isinstance(call, Mapping):
            continue
        nested = call.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
        args = function.get("arguments", function.get("args"))
        calls.append(tools.call(call.get("id"), function.get("name"), args))
    legacy = item.get("function_call")
    if isinstance(legacy, Mapping):
        calls.append(tools.call(None, legacy.get("name"), legacy.get("arguments")))
    return calls


def _sharegpt_call(value: Any, tools: parts.ToolNames) -> parts.Rendered:
    """A ShareGPT `function_call` turn: its value is `{"name", "arguments"}` as JSON text."""
    out = parts.Rendered()
    decoded = value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
    if isinstance(decoded, Mapping):
        out.add(tools.call(None, decoded.get("name"), decoded.get("arguments")))
    else:
        out.add(parts.tool_call(None, value))
    return out


def _media_tokens(content: Any, tokens: tuple[tuple[str, str], ...]) -> Any:
    """`<image>` where the image was shown: a placeholder line in its place."""
    if not tokens or not isinstance(content, str):
        return content
    for token, placeholder in tokens:
        if token in content:
            pieces = [p.strip() for p in content.split(token)]
            lines = [pieces[0]]
            for piece in pieces[1:]:
                lines += [placeholder, piece]
            content = "\n".join(line for line in lines if line)
    return content


def _feedback(value: Any) -> dict[str, Any] | None:
    """The chat user's thumbs as the contract has them; anything malformed is ignored, not fatal."""
    if not isinstance(value, Mapping) or not value:
        return None
    clean: dict[str, Any] = {}
    score = value.get("score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        clean["score"] = score
    for key in ("comment", "at"):
        if isinstance(value.get(key), str) and value[key]:
            clean[key] = value[key]
    return clean or None


def _shape(doc: Mapping[str, Any], key: str) -> str:
    if key == "conversations":
        return "sharegpt"
    if key == "conversation":
        return "wildchat" if "conversation_hash" in doc else "lmsys"
    if doc.get("contract") == CONTRACT:
        return "labelsync"
    if "session_id" in doc or "turn_count" in doc:
        return "tutorial"
    if _is_ollama(doc, key):
        return "ollama"
    if any(k in doc for k in ("system", "anthropic_version", "stop_sequences")):
        return "anthropic"
    listed = array(doc.get(key))
    kinds = {string(obj(b).get("type")) for m in listed for b in array(obj(m).get("content"))}
    return "anthropic" if kinds & _ANTHROPIC_BLOCKS else "openai"


def _is_ollama(doc: Mapping[str, Any], key: str) -> bool:
    """Ollama bodies: `think`/`keep_alive`/`options`, base64 `images`, arguments as objects."""
    if any(k in doc for k in ("think", "keep_alive", "options")):
        return True
    for item in map(obj, array(doc.get(key))):
        if any(k in item for k in ("images", "thinking", "tool_name")):
            return True
        for call in array(item.get("tool_calls")):
            if isinstance(obj(obj(call).get("function")).get("arguments"), Mapping):
                return True
    return False


READER = Reader("messages", matches, read)
