"""What of a conversation may leave the machine, with redaction on (labelsync.redact).

Everything a task carries that came from the conversation is redacted in one
call, so one e-mail address is `<EMAIL_1>` in the question, the answer, the
chat user's comment and the metadata alike: message texts, feedback comments,
the title, every text in the file's other fields (they travel in the task's
meta), and the file's name as the task shows it.

The conversation's id is labelsync's key for it in the state, the logs and the
task: if personal data is found in it, the conversation is known by a
pseudonym made from it instead (the same every time, so versions still line
up). The sync key is computed over the original dialogue, so turning redaction
on, or changing a pattern, does not make every conversation look new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from labelsync.contract import Conversation
from labelsync.redact import Redactor


def for_logs(redactor: Redactor) -> Callable[[str], str] | None:
    """What labelsync's own words about a conversation (file names, ids, server text in
    log lines and `status`) go through when redaction is on: the pattern detectors, not
    the named-entity model (slow, and it takes log words for names) and not `ip`
    (labelsync names the servers it talks to). None when nothing would be redacted."""
    patterns = redactor.patterns(leave=("ip",))
    if not patterns.enabled:
        return None
    return lambda text: patterns.redact([text]).texts[0]


def identity(conversation: Conversation, redactor: Redactor) -> Conversation:
    """The conversation under an id that holds no personal data."""
    if not redactor.enabled or not redactor.redact([conversation.thread_id]).total:
        return conversation
    digest = hashlib.sha256(f"labelsync-id\0{conversation.thread_id}".encode()).hexdigest()
    return replace(conversation, thread_id=f"redacted-{digest[:20]}")


def shown(
    conversation: Conversation, source_file: str, redactor: Redactor
) -> tuple[Conversation, str, dict[str, int]]:
    """The conversation and file name as they may be shown, and what was redacted (counts)."""
    if not redactor.enabled:
        return conversation, source_file, {}
    texts: list[str] = [m.content for m in conversation.messages]
    comments = [
        (i, m.feedback["comment"])
        for i, m in enumerate(conversation.messages)
        if m.feedback and isinstance(m.feedback.get("comment"), str)
    ]
    texts += [comment for _, comment in comments]
    leaves: list[tuple[tuple[Any, ...], str]] = []
    _strings(conversation.extra, (), leaves)
    texts += [text for _, text in leaves]
    texts += [conversation.title or "", source_file]
    result = redactor.redact(texts)
    out = list(result.texts)
    contents = out[: len(conversation.messages)]
    out = out[len(conversation.messages) :]
    new_comments = dict(zip((i for i, _ in comments), out[: len(comments)], strict=True))
    out = out[len(comments) :]
    extra: Any = _copy(conversation.extra)
    for (path, _), text in zip(leaves, out[: len(leaves)], strict=True):
        _put(extra, path, text)
    title, file_name = out[len(leaves)], out[len(leaves) + 1]
    messages = tuple(
        replace(
            m,
            content=contents[i],
            feedback=_comment(m, new_comments.get(i)),
        )
        for i, m in enumerate(conversation.messages)
    )
    safe = replace(conversation, messages=messages, extra=extra, title=title or conversation.title)
    return safe, file_name, dict(result.counts)


def _comment(message: Any, comment: str | None) -> Any:
    if comment is None or not message.feedback:
        return message.feedback
    return {**message.feedback, "comment": comment}


def _strings(value: Any, path: tuple[Any, ...], out: list[tuple[tuple[Any, ...], str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(item, (*path, key), out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _strings(item, (*path, index), out)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _put(container: Any, path: tuple[Any, ...], text: str) -> None:
    for step in path[:-1]:
        container = container[step]
    container[path[-1]] = text
