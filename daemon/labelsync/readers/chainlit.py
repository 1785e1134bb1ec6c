"""Chainlit threads (`ThreadDict`: `steps`, `elements`) and step-per-line dumps.

- Messages are steps typed `user_message` / `assistant_message` /
  `system_message`, their text in `output`. What Chainlit runs around them is
  not dialogue: the `on_message` `run` step (assistant messages nest under it),
  the `llm` step (it repeats the answer the assistant message shows),
  embedding/retrieval/rerank steps. A `tool` step is a call (`input`) and its
  result (`output`), named by the step's `name`.
- `isError` messages are the framework's error notices, skipped as
  labelsync's own chatbot skips them; feedback on a step is the user's thumbs.
- Elements (images, files) are attached by `forId` and come before the text.
- Steps are read in `createdAt` order (Chainlit's data layer stores them so).
- Step-per-line dumps (`threadId` on each line): each line is one event of
  its thread; a streamed message is first written empty, then complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import Message
from labelsync.readers import parts
from labelsync.readers.base import (
    Draft,
    Options,
    Reader,
    array,
    id_or_none,
    need_list,
    obj,
    string,
    text_or_none,
    time_or_none,
)

_MESSAGES = {"user_message": "user", "assistant_message": "assistant", "system_message": "system"}
# Literal AI step types that are not dialogue.
_RUNNING = {"run", "llm", "embedding", "retrieval", "rerank", "undefined"}
STEP_TYPES = set(_MESSAGES) | _RUNNING | {"tool"}


def matches(doc: Mapping[str, Any]) -> bool:
    head = next(iter(array(doc.get("steps"))), None)
    return "steps" in doc and (head is None or (isinstance(head, Mapping) and is_step(head)))


def is_step(item: Mapping[str, Any]) -> bool:
    return string(item.get("type")) in STEP_TYPES and "output" in item and "threadId" in item


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    draft = _read_steps(need_list(doc.get("steps"), "steps"), array(doc.get("elements")))
    draft.shape = "chainlit-thread"
    draft.final = True  # a thread as the data layer returns it: an export
    draft.own_id = id_or_none(doc.get("id")) or draft.own_id
    draft.title = text_or_none(doc.get("name"))
    draft.timestamp = time_or_none(doc.get("createdAt")) or draft.timestamp
    return draft


def read_items(items: list[Any], options: Options) -> Draft:
    return _read_steps(items, [])


def _read_steps(steps: list[Any], elements: list[Any]) -> Draft:
    draft = Draft(messages=[], shape="chainlit-steps")
    attached: dict[str, list[str]] = {}
    for element in elements:
        element = obj(element)
        if isinstance(element.get("forId"), str):
            attached.setdefault(element["forId"], []).append(_element(element))
    ordered = [obj(s) for s in steps]
    if all(isinstance(s.get("createdAt"), str) for s in ordered):
        ordered.sort(key=lambda s: str(s["createdAt"]))  # stable: ties keep file order
    models: dict[Any, str] = {}  # run step -> the model its llm step used
    for step in ordered:
        if step.get("type") == "llm":
            model = string(obj(step.get("generation")).get("model"))
            if model:
                models[id_or_none(step.get("parentId"))] = model
        for message in step_messages(step, attached.get(str(step.get("id")), [])):
            if message.role == "assistant" and message.model is None:
                model = models.get(id_or_none(step.get("parentId")))
                message = Message(
                    message.role,
                    message.content,
                    message.timestamp,
                    message.feedback,
                    model,
                    message.provider,
                    message.id,
                )
            draft.messages.append(message)
        draft.own_id = draft.own_id or id_or_none(step.get("threadId"))
    if ordered:
        draft.timestamp = time_or_none(ordered[0].get("createdAt"))
    replies = [m.model for m in draft.messages if m.model]
    draft.model = replies[-1] if replies else None
    return draft


def step_messages(step: Mapping[str, Any], lead: list[str] | None = None) -> list[Message]:
    """The message(s) one step shows: none for running steps, errors and empty writes."""
    kind = step.get("type")
    when = time_or_none(step.get("createdAt"))
    step_id = id_or_none(step.get("id"))
    output = step.get("output")
    text = output if isinstance(output, str) else parts.args_text(output) if output else ""
    if kind == "tool":
        if not text and not step.get("end"):
            return []  # still running: its result comes with the step's update
        name = step.get("name")
        call = parts.tool_call(name, step.get("input") or None)
        result = parts.tool_result(string(name), text, error=step.get("isError") is True)
        return [
            Message("assistant", call, when, id=step_id),
            Message("tool", result, when, id=f"{step_id}:result" if step_id else None),
        ]
    role = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if role is None or step.get("isError") is True:
        return []
    content = "\n".join([*(lead or []), text] if text.strip() else lead or [])
    if not content.strip():
        return []  # a streamed message's first, empty write
    return [Message(role, content, when, feedback=_feedback(step.get("feedback")), id=step_id)]


def _element(element: Mapping[str, Any]) -> str:
    kind, url, name = element.get("type"), element.get("url"), element.get("name")
    if kind == "image":
        return parts.image(url)
    if kind in ("audio", "video"):
        return f"[{kind}]"
    return parts.attachment(name, element.get("mime"))


def _feedback(value: Any) -> dict[str, Any] | None:
    """Chainlit's `value` is 1 (thumbs up) or 0 (thumbs down), as the contract's score."""
    score = obj(value).get("value")
    if score not in (0, 1) or isinstance(score, bool):
        return None
    comment = obj(value).get("comment")
    return {
        "score": score,
        **({"comment": comment} if isinstance(comment, str) and comment else {}),
    }


READER = Reader("chainlit", matches, read)
