"""Request bodies inside an envelope: logged request + response pairs, batch request files.

- A logged pair (`{"request": ..., "response": ...}`, what hand-rolled loggers
  write per API call): the request is read by whichever reader knows it, then
  the reply in the response is appended, in its provider's shape: OpenAI
  `choices[0].message` (with `n` > 1, the first choice is the one a chat shows),
  Anthropic `content` blocks, Ollama `message`, Responses `output`, Gemini
  `candidates[0].content`. The response's `model` is the exact model that wrote it.
- A batch request line (OpenAI `{"custom_id", "method", "url", "body"}`,
  Anthropic `{"custom_id", "params"}`): the body is read, named by `custom_id`.
  A batch file is a data set: it cannot grow. A batch *result* line holds only
  the reply, so it is reported with where the question is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import gemini, messages, parts, responses
from labelsync.readers.base import (
    Draft,
    Options,
    Reader,
    id_or_none,
    obj,
    string,
)

Inner = Callable[[Mapping[str, Any], Options], Draft]  # reads a body with the right reader
_API = Options()  # provider response shapes are fixed, whatever the user's field settings
_BODIES = ("messages", "conversations", "conversation", "contents", "input", "chat_messages")


def matches(doc: Mapping[str, Any]) -> bool:
    if "custom_id" in doc:
        return any(k in doc for k in ("params", "body", "result", "response"))
    # A conversation that merely notes its request beside its messages is not an envelope.
    return isinstance(doc.get("request"), Mapping) and not any(k in doc for k in _BODIES)


def reader(inner: Inner) -> Reader:
    """The envelope reader, given how the registry reads the body inside."""

    def read(doc: Mapping[str, Any], options: Options) -> Draft:
        if "custom_id" in doc:
            return _batch(doc, options, inner)
        return _logged(doc, options, inner)

    return Reader("envelopes", matches, read)


def _batch(doc: Mapping[str, Any], options: Options, inner: Inner) -> Draft:
    body = doc.get("params", doc.get("body"))
    if not isinstance(body, Mapping):
        raise InvalidConversation(
            "a batch result line holds only the reply: read the batch's request file instead"
        )
    try:
        draft = inner(body, options)
    except InvalidConversation as invalid:
        raise InvalidConversation(f"batch request body: {invalid.reason}") from None
    # The envelope says whose batch it is; the body alone may not (a bare chat body).
    if "params" in doc:
        draft.shape = "anthropic-batch"
    else:
        url = doc.get("url")
        responses_api = isinstance(url, str) and url.rstrip("/").endswith("/responses")
        draft.shape = "openai-responses-batch" if responses_api else "openai-batch"
    draft.own_id = id_or_none(doc.get("custom_id")) or draft.own_id
    draft.final = True
    return draft


def _logged(doc: Mapping[str, Any], options: Options, inner: Inner) -> Draft:
    try:
        draft = inner(obj(doc.get("request")), options)
    except InvalidConversation as invalid:
        raise InvalidConversation(f"logged request: {invalid.reason}") from None
    response = doc.get("response")
    if response is None:
        return draft  # a request logged alone (Vertex batch input lines)
    before = len(draft.messages)
    family = _append_reply(response, draft)
    if len(draft.messages) == before:
        draft.warnings.append("response: no reply found in it (an error, or an unknown shape)")
    model = string(obj(response).get("model")) or string(obj(response).get("modelVersion"))
    if model:
        draft.model = model
        draft.messages[before:] = [
            replace(m, model=model) if m.role == "assistant" else m for m in draft.messages[before:]
        ]
    draft.shape = f"{family or draft.shape}-logged"
    return draft


def _append_reply(response: Any, draft: Draft) -> str | None:
    """Append the reply held in a response; returns the provider family it was in."""
    if isinstance(response, str):
        if response.strip():
            draft.messages.append(Message("assistant", response))
        return None
    response = obj(response)
    if isinstance(response.get("choices"), list):
        choice = obj(next(iter(response["choices"]), None))
        message = choice.get("message")
        if isinstance(message, Mapping):
            messages.read_list([message], "response.choices[0].message", _API, draft)
        return "openai"
    if response.get("type") == "message" and isinstance(response.get("content"), list):
        reply = {"role": response.get("role") or "assistant", "content": response["content"]}
        messages.read_list([reply], "response", _API, draft)
        return "anthropic"
    if isinstance(response.get("message"), Mapping):
        messages.read_list([response["message"]], "response.message", _API, draft)
        return "ollama" if "done" in response else None
    if isinstance(response.get("output"), list):
        responses.append_items(response["output"], "response.output", draft, parts.ToolNames())
        return "openai-responses"
    if isinstance(response.get("candidates"), list):
        content = obj(next(iter(response["candidates"]), None)).get("content")
        if isinstance(content, Mapping):
            gemini.append_contents([content], "response.candidates", draft, parts.ToolNames())
        return "gemini"
    return None
