"""Label Studio annotations of labelsync tasks, read into a typed model (pure, no IO).

Two templates made the projects users have:
- labelsync's template (templates/community.xml): a control per message, named
  after the message's index in `data.chat`: `clarity_4`, `accuracy_4`, `tone_4`,
  `comment_4` (assistant replies), `intent_3` (user messages);
- the earlier one: `<Paragraphs name="chat">` regions; a `message` region
  (ParagraphLabels) whose `value.start` is the message index as a string, and
  per-region results `clarity`, `accuracy`, `tone` (several choices),
  `message_comment`, `user_intent` that share the region's `id`.
Both keep the conversation's `rating` (1-5 stars), `answered` and
`conversation_comment`. A project whose config is neither is refused with one
line that names what is missing: its annotations could not be joined to messages.
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class UnknownConfig(ValueError):
    """The project's labeling config is not one labelsync knows how to read."""


class NotOurs(ValueError):
    """A task labelsync did not make (no thread_id, version or chat): skipped, counted."""


class Template(enum.Enum):
    PER_MESSAGE = "labelsync template (a control per message)"
    PARAGRAPHS = "earlier labelsync template (Paragraphs regions)"


@dataclass(frozen=True)
class MessageJudgment:
    """One annotator's judgments of one message."""

    index: int
    clarity: int | None = None
    accuracy: int | None = None
    tone: tuple[str, ...] = ()  # the earlier template allowed several
    comment: str | None = None
    intent: str | None = None

    def rated(self) -> bool:
        return any(
            v not in (None, ()) for v in (self.clarity, self.accuracy, self.tone, self.intent)
        ) or bool(self.comment)


@dataclass(frozen=True)
class Annotation:
    id: int
    annotator_id: int | None
    created_at: str
    updated_at: str
    rating: int | None = None
    answered: str | None = None
    comment: str | None = None
    messages: Mapping[int, MessageJudgment] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    """The chat user's thumbs (score 1 up, 0 down) and comment on one message."""

    index: int
    role: str
    score: int | None
    comment: str | None
    at: str | None


@dataclass(frozen=True)
class ChatMessage:
    index: int
    role: str
    content: str
    id: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class AnnotatedTask:
    task_id: int
    thread_id: str
    version: int
    latest: bool
    model: str
    timestamp: str
    chat: tuple[ChatMessage, ...]
    feedback: Mapping[int, Feedback]  # by message index
    annotations: tuple[Annotation, ...]  # submitted ones only (skips are left out)

    def model_of(self, index: int) -> str:
        message = self.chat[index]
        return message.model or self.model or "(unknown)"


# -- the labeling config ---------------------------------------------------------------------
_PER_MESSAGE_RATINGS = ("clarity_{{idx}}", "accuracy_{{idx}}")
_REGION_RATINGS = ("clarity", "accuracy")


def template_of(label_config: str) -> Template:
    """Which template made the project; UnknownConfig names what is missing."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise UnknownConfig(f"its labeling config is not XML ({exc})") from None
    tags = {(el.tag.lower(), el.get("name", "")): el for el in root.iter()}
    names = {name for _, name in tags}
    missing: list[str] = []
    if ("rating", "rating") not in tags:
        missing.append('the conversation rating <Rating name="rating">')
    if all(n in names for n in _PER_MESSAGE_RATINGS):
        if not missing:
            return Template.PER_MESSAGE
    elif ("paragraphlabels", "message") in tags and all(n in names for n in _REGION_RATINGS):
        if not missing:
            return Template.PARAGRAPHS
    else:
        missing.append(
            "per-message ratings (clarity_{{idx}} and accuracy_{{idx}} in a Repeater, as in "
            'labelsync\'s template, or <ParagraphLabels name="message"> with per-region '
            "clarity and accuracy, as in its earlier one)"
        )
    raise UnknownConfig(
        "its labeling config is not one of labelsync's templates: no "
        + "; no ".join(missing)
        + " (make the project with `labelsync init-project`)"
    )


# -- one task ------------------------------------------------------------------------------
_PER_MESSAGE = re.compile(r"^(clarity|accuracy|tone|comment|intent)_(\d+)$")
_REGION_NAMES = {
    "clarity": "clarity",
    "accuracy": "accuracy",
    "tone": "tone",
    "message_comment": "comment",
    "user_intent": "intent",
}


def parse_task(task: Mapping[str, Any], template: Template) -> AnnotatedTask:
    """A task as Label Studio lists it (id, data, meta, annotations) -> AnnotatedTask."""
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise NotOurs("a task without data")
    try:
        thread_id = str(data["thread_id"])
        version = int(data["version"])
        chat = tuple(_message(i, m) for i, m in enumerate(data["chat"]))
    except (KeyError, TypeError, ValueError):
        raise NotOurs("not a labelsync task (no thread_id, version or chat)") from None
    annotations = tuple(
        _annotation(a, template, len(chat))
        for a in task.get("annotations") or ()
        if isinstance(a, Mapping) and not a.get("was_cancelled")
    )
    return AnnotatedTask(
        task_id=int(task["id"]),
        thread_id=thread_id,
        version=version,
        latest=bool(data.get("latest", False)),
        model=str(data.get("model") or ""),
        timestamp=str(data.get("timestamp") or ""),
        chat=chat,
        feedback=_feedback(data["chat"], task.get("meta")),
        annotations=tuple(a for a in annotations if _has_any(a)),
    )


def _message(index: int, item: Any) -> ChatMessage:
    if not isinstance(item, Mapping):
        raise TypeError("a message that is not an object")
    return ChatMessage(
        index=index,
        role=str(item["role"]),
        content=str(item["content"]),
        id=None if item.get("id") is None else str(item["id"]),
        model=str(item["model"]) if item.get("model") else None,
    )


def _feedback(chat: Sequence[Any], meta: Any) -> dict[int, Feedback]:
    """The chat user's feedback as it is now: labelsync writes `meta.labelsync.feedback`
    when it changed after the task was annotated, and then it wins over `data.chat`."""
    ours = meta.get("labelsync") if isinstance(meta, Mapping) else None
    current = ours.get("feedback") if isinstance(ours, Mapping) else None
    if isinstance(current, list):
        items: Iterable[tuple[int, Any, str]] = (
            (int(f["index"]), f, str(f.get("role", "")))
            for f in current
            if isinstance(f, Mapping) and isinstance(f.get("index"), int)
        )
    else:
        items = (
            (i, m.get("feedback"), str(m.get("role", "")))
            for i, m in enumerate(chat)
            if isinstance(m, Mapping)
        )
    found: dict[int, Feedback] = {}
    for index, value, role in items:
        if isinstance(value, Mapping) and value:
            score = value.get("score")
            found[index] = Feedback(
                index=index,
                role=role,
                score=int(score) if isinstance(score, (int, float)) else None,
                comment=str(value["comment"]) if value.get("comment") else None,
                at=str(value["at"]) if value.get("at") else None,
            )
    return found


def _annotation(raw: Mapping[str, Any], template: Template, size: int) -> Annotation:
    result = [r for r in raw.get("result") or () if isinstance(r, Mapping)]
    conversation: dict[str, Any] = {}
    for item in result:
        name = item.get("from_name")
        if name == "rating":
            conversation["rating"] = _rating(item)
        elif name == "answered":
            conversation["answered"] = _first(_choices(item))
        elif name == "conversation_comment":
            conversation["comment"] = _text(item)
    per_message = template is Template.PER_MESSAGE
    judged = _per_message(result) if per_message else _per_region(result)
    completed_by = raw.get("completed_by")
    if isinstance(completed_by, Mapping):  # some endpoints expand the user
        completed_by = completed_by.get("id")
    return Annotation(
        id=int(raw.get("id") or 0),
        annotator_id=completed_by if isinstance(completed_by, int) else None,
        created_at=str(raw.get("created_at") or ""),
        updated_at=str(raw.get("updated_at") or raw.get("created_at") or ""),
        messages={
            i: MessageJudgment(index=i, **values)
            for i, values in sorted(judged.items())
            if 0 <= i < size  # a result for a message the task does not have: ignored
        },
        **conversation,
    )


def _per_message(result: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    judged: dict[int, dict[str, Any]] = {}
    for item in result:
        match = _PER_MESSAGE.match(str(item.get("from_name", "")))
        if match:
            kind, index = match.group(1), int(match.group(2))
            judged.setdefault(index, {})[kind] = _value(kind, item)
    return judged


def _per_region(result: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Regions first (their id -> message index), then the results that share an id."""
    where: dict[Any, int] = {}
    for item in result:
        if item.get("from_name") == "message":
            index = _index(item)
            if index is not None:
                where[item.get("id")] = index
    judged: dict[int, dict[str, Any]] = {}
    for item in result:
        kind = _REGION_NAMES.get(str(item.get("from_name", "")))
        if kind is None:
            continue
        index = where.get(item.get("id"))
        if index is None:
            index = _index(item)  # per-region results repeat the region's start
        if index is not None:
            judged.setdefault(index, {})[kind] = _value(kind, item)
    return judged


def _index(item: Mapping[str, Any]) -> int | None:
    value = item.get("value")
    start = value.get("start") if isinstance(value, Mapping) else None
    try:
        return int(start) if start is not None else None
    except (TypeError, ValueError):
        return None


def _value(kind: str, item: Mapping[str, Any]) -> Any:
    if kind in ("clarity", "accuracy"):
        return _rating(item)
    if kind == "tone":
        return tuple(_choices(item))
    if kind == "intent":
        return _first(_choices(item))
    return _text(item)


def _rating(item: Mapping[str, Any]) -> int | None:
    value = item.get("value")
    rating = value.get("rating") if isinstance(value, Mapping) else None
    return int(rating) if isinstance(rating, (int, float)) and rating > 0 else None


def _choices(item: Mapping[str, Any]) -> list[str]:
    value = item.get("value")
    choices = value.get("choices") if isinstance(value, Mapping) else None
    return [str(c) for c in choices] if isinstance(choices, list) else []


def _text(item: Mapping[str, Any]) -> str | None:
    value = item.get("value")
    text = value.get("text") if isinstance(value, Mapping) else None
    if isinstance(text, list):
        text = "\n".join(str(t) for t in text)
    return str(text) if text else None


def _first(values: Sequence[str]) -> str | None:
    return values[0] if values else None


def _has_any(annotation: Annotation) -> bool:
    return (
        annotation.rating is not None
        or annotation.answered is not None
        or bool(annotation.comment)
        or any(j.rated() for j in annotation.messages.values())
    )
