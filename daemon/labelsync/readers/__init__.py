"""Readers: any chat JSON -> `Conversation`. One module per family of sources.

A document (a file's JSON object, an element of a JSON array, a JSONL line)
is offered to each reader in this order; the first whose `matches` says yes
reads it, and the engine never knows which one ran:

    your own fields    when LABELSYNC_MESSAGES_FIELDS/_ROLE_KEYS/_CONTENT_KEYS are set
    envelopes          a body inside `{"request", "response"}` (logged API calls) or a
                       batch request line (`custom_id` + `body`/`params`): the body is
                       read by the reader below that knows it
    chatgpt            ChatGPT data export: `mapping` tree, `current_node`
    claude             Claude.ai data export: `chat_messages`
    openwebui          Open WebUI export: `chat.history.messages`, `currentId`
    librechat          LibreChat export: `messagesTree` / `messages`, `isCreatedByUser`
    aistudio           Google AI Studio saved prompt: `chunkedPrompt.chunks`
    gemini             Gemini API bodies: `contents` of `parts`
    responses          OpenAI Responses API: `input` / `output` item lists
    assistants         OpenAI Assistants thread messages: `{"object": "list", "data"}`
    langchain          LangChain message dicts: `{"type", "data"}`, `lc: 1`
    chainlit           Chainlit thread dumps: `steps`
    rasa               Rasa tracker dumps: `sender_id` + `events`
    vercel             Vercel AI SDK UI messages: `parts`
    messages           labelsync's contract, the tutorial logger, OpenAI Chat
                       Completions and fine-tuning rows, Anthropic Messages, Ollama,
                       ShareGPT, LMSYS-Chat and WildChat rows

Each reader above `messages` recognises keys the generic family never has (or
a message list whose first element is of its own shape), so none takes a
document `messages` should read. A bare JSON list of messages (no object
around it) is read by the family its messages belong to. Message-per-line
logs are grouped by the engine (labelsync.readers.events tells such a line
apart, in the generic shape and in Rasa's, LangChain's and Chainlit's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labelsync.contract import (
    Conversation,
    InvalidConversation,
    id_from_content,
    id_from_file_name,
    json_type,
)
from labelsync.readers import (
    aistudio,
    assistants,
    chainlit,
    chatgpt,
    claude,
    envelopes,
    events,
    gemini,
    langchain,
    librechat,
    messages,
    openwebui,
    rasa,
    responses,
    vercel,
)
from labelsync.readers.base import Draft, Options, Reader, first, first_id, obj


def _read_body(doc: Mapping[str, Any], options: Options) -> Draft:
    """The body inside an envelope, read by the reader that knows it."""
    return _reader_for(doc, options).read(doc, options)


READERS: tuple[Reader, ...] = (
    envelopes.reader(_read_body),
    chatgpt.READER,
    claude.READER,
    openwebui.READER,
    librechat.READER,
    aistudio.READER,
    gemini.READER,
    responses.READER,
    assistants.READER,
    langchain.READER,
    chainlit.READER,
    rasa.READER,
    vercel.READER,
    messages.READER,
)

_SCAN = 16  # a list's family is told by its first messages


def _any(recognise: Any) -> Any:
    return lambda items: any(recognise(obj(item)) for item in items[:_SCAN])


def _head(recognise: Any) -> Any:
    return lambda items: bool(items) and isinstance(items[0], Mapping) and recognise(items[0])


# A bare list of messages: which family. Responses input mixes typeless messages with
# typed items, so any typed item among the first ones tells it.
_LIST_READERS = (
    (_head(langchain.is_message), langchain.read_items),
    (_any(responses.is_item), responses.read_items),
    (_head(assistants.is_message), assistants.read_items),
    (_head(vercel.is_message), vercel.read_items),
    (_head(gemini.is_content), gemini.read_items),
    (_head(chainlit.is_step), chainlit.read_items),
)

DEFAULT_OPTIONS = Options()

__all__ = ["READERS", "Options", "is_message_list", "read", "read_items"]


def read(
    doc: Any,
    options: Options = DEFAULT_OPTIONS,
    *,
    file_name: str | None = None,
    many: bool = False,
) -> Conversation:
    """One conversation from one JSON value, or InvalidConversation with a one-line reason.

    file_name: the file, when this value is the whole file (a conversation with
    no id of its own is then named after it); many: the value is one of many
    in its file (an array element or a JSONL line).
    """
    if isinstance(doc, list):
        return read_items(doc, options, file_name=file_name, many=many)
    if not isinstance(doc, Mapping):
        raise InvalidConversation(f"a JSON {json_type(doc)}, expected an object or an array")
    reader = _reader_for(doc, options)
    draft = reader.read(doc, options)
    if reader is messages.READER and options.custom_fields and first(doc, options.messages_fields):
        draft.shape = "your fields"  # LABELSYNC_MESSAGES_FIELDS and friends
    return _finish(draft, doc, options, file_name, many)


def read_items(
    items: list[Any],
    options: Options = DEFAULT_OPTIONS,
    *,
    file_name: str | None = None,
    many: bool = False,
) -> Conversation:
    """A bare list of messages (no object around it)."""
    if not items:
        raise InvalidConversation("an empty array: nothing to evaluate")
    for recognise, read_list in _LIST_READERS:
        if recognise(items):
            draft = read_list(items, options)
            break
    else:
        draft = messages.read({"messages": items}, options)
        draft.shape = "message-list"
    return _finish(draft, {}, options, file_name, many)


def is_message_list(items: list[Any], options: Options = DEFAULT_OPTIONS) -> bool:
    """Whether a JSON array holds the messages of one conversation (not many conversations)."""
    head = items[0] if items else None
    if not isinstance(head, Mapping):
        return False
    if any(recognise(items) for recognise, _ in _LIST_READERS):
        return True
    return events.is_event(head, options) and events.conversation_of(head) is None


def _reader_for(doc: Mapping[str, Any], options: Options) -> Reader:
    if options.custom_fields and messages.matches_configured(options)(doc):
        return messages.READER
    for reader in READERS:
        if reader.matches(doc):
            return reader
    wanted = " or ".join(f'"{k}"' for k in options.messages_fields)
    # Keys are the document's own text: escaped, so the reason stays one line.
    keys = ", ".join(json.dumps(k, ensure_ascii=False)[1:-1] for k in sorted(map(str, doc))[:8])
    keys = keys or "none"
    raise InvalidConversation(
        f"no message list: expected a {wanted} array or a known export (top-level keys: {keys})"
    )


def _finish(
    draft: Draft, doc: Mapping[str, Any], options: Options, file_name: str | None, many: bool
) -> Conversation:
    if not draft.messages:
        raise InvalidConversation("no messages: nothing to evaluate")
    thread_id = None
    if options.custom_ids or draft.own_id is None:
        thread_id = first_id(doc, options.id_fields)
    thread_id = thread_id or draft.own_id
    messages_ = tuple(draft.messages)
    if thread_id is None:
        thread_id = id_from_file_name(file_name) if file_name and not many else None
    return Conversation(
        thread_id=thread_id or id_from_content(messages_),
        messages=messages_,
        shape=draft.shape,
        model=draft.model,
        timestamp=draft.timestamp,
        ended=draft.ended,
        final=draft.final,
        title=draft.title,
        extra=draft.extra,
        warnings=tuple(draft.warnings),
    )
