"""The shape of a Label Studio task made from one version of a conversation.

`data` keys come in the order the Data Manager shows them as columns
(conversation, version, latest, turns, messages, model, feedback, time), then
the dialogue and labelsync's bookkeeping, which the project's view hides.
Each message of `data.chat` keeps `role` and `content` (what an export
reads) and carries what the evaluation template shows: its `index`, its
`html` (labelsync.render), the chat user's `feedback` on it, and
`as_user`/`as_assistant`, one-item lists that make the template create the
controls that fit the message's role and none of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labelsync import render
from labelsync.contract import Conversation


@dataclass(frozen=True)
class TaskDraft:
    """A task but for its version number, which only planning can give.

    Built on the engine's reader thread, so the import loop only numbers it.
    """

    data: dict[str, Any]
    meta: dict[str, Any]

    def numbered(self, version: int, previous: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
        """previous: (version, sync key) of every earlier version, so a rebuilt state
        knows versions that were retired (deleted) from the project."""
        thread_id = self.data["thread_id"]
        data = {
            "thread_id": thread_id,
            "version": version,
            **self.data,
            "session_id": f"{thread_id}_v{version}",
        }
        if previous:
            data["previous"] = [[v, key] for v, key in previous]
        return {"data": data, "meta": self.meta}


# What the project's Data Manager view shows (the rest of the task is there, hidden).
COLUMNS = (
    "id", "completed_at", "total_annotations", "annotators",
    "data.thread_id", "data.version", "data.latest", "data.turn_count", "data.message_count",
    "data.model", "data.feedback", "data.timestamp",
)  # fmt: skip
COLUMNS_BESIDE_LABELING = (
    "data.thread_id", "data.version", "data.latest", "data.feedback", "total_annotations",
)  # fmt: skip
COLUMN_WIDTHS = {
    "data.thread_id": 230, "data.version": 80, "data.latest": 80, "data.turn_count": 95,
    "data.message_count": 120, "data.model": 130, "data.feedback": 150,
    "data.timestamp": 190, "completed_at": 150,
}  # fmt: skip
DATA_KEYS = (
    "thread_id", "version", "latest", "turn_count", "message_count", "model", "feedback",
    "timestamp", "chat", "session_id", "source_file", "sync_key", "previous",
)  # fmt: skip


def draft_task(
    conversation: Conversation,
    source_file: str,
    shown: Conversation | None = None,
    redaction: str | None = None,
) -> TaskDraft:
    """`data` is what the template and the Data Manager use; `meta` keeps the rest.

    shown: the conversation as it may leave the machine (redacted, labelsync.privacy);
    its texts are what the task holds, while the keys are the original's.
    redaction: which redaction settings made `shown` (kept in meta).

    `sync_key` lives in `data` (not `meta`) because Label Studio can filter on
    `data.<key>` but answers 500 to a filter on `meta`: it is how an import of
    unknown outcome is looked up.
    """
    view = shown or conversation
    data: dict[str, Any] = {
        "thread_id": conversation.thread_id,
        "latest": True,
        "turn_count": conversation.user_turns,
        "message_count": len(conversation.messages),
        "model": conversation.model or _last_model(conversation) or "",
        "feedback": feedback_summary(conversation),
        "timestamp": conversation.timestamp or "",
        "chat": chat(view),
        "source_file": source_file,
        "sync_key": conversation.sync_key,
    }
    meta: dict[str, Any] = {"labelsync": {"shape": conversation.shape, "ended": conversation.ended}}
    if view.title:
        meta["labelsync"]["title"] = view.title
    if redaction:
        meta["labelsync"]["redaction"] = redaction
    meta.update(view.extra)
    times = [m.timestamp for m in conversation.messages]
    if any(times):
        meta["message_timestamps"] = times
    return TaskDraft(data, meta)


def build_task(conversation: Conversation, version: int, source_file: str) -> dict[str, Any]:
    """The task for one version of a conversation: data.chat, thread_id, version, ..."""
    return draft_task(conversation, source_file).numbered(version)


def chat(conversation: Conversation) -> list[dict[str, Any]]:
    items = []
    for index, m in enumerate(conversation.messages):
        item: dict[str, Any] = {"role": m.role, "content": m.content, "index": index}
        if m.id:
            item["id"] = m.id  # the source's message id, for joining ratings back
        if m.model:
            item["model"] = m.model
        if m.feedback:
            item["feedback"] = dict(m.feedback)
        item["html"] = render.message(index, m.role, m.content, m.model, m.feedback)
        item["as_user"] = [index] if m.role == "user" else []
        item["as_assistant"] = [index] if m.role == "assistant" else []
        items.append(item)
    return items


def feedback_update(conversation: Conversation) -> dict[str, Any]:
    """The data fields that change when only the chat user's feedback changed."""
    return {"feedback": feedback_summary(conversation), "chat": chat(conversation)}


def feedback_summary(conversation: Conversation) -> str:
    """One short line for the Data Manager and the page header: where the thumbs are."""
    downs: list[str] = []
    ups: list[str] = []
    other: list[str] = []
    for index, m in enumerate(conversation.messages):
        if m.feedback:
            kind = render.verdict_of(m.feedback)[1]
            {"down": downs, "up": ups}.get(kind, other).append(f"#{index}")
    parts = [
        f"{label} {' '.join(where)}"
        for label, where in (("down", downs), ("up", ups), ("comment", other))
        if where
    ]
    return ", ".join(parts) if parts else "none"


def feedback_of(conversation: Conversation) -> list[dict[str, Any]]:
    """Every message's feedback with where it is: what the export carries."""
    return [
        {"index": i, "role": m.role, **dict(m.feedback)}
        for i, m in enumerate(conversation.messages)
        if isinstance(m.feedback, Mapping) and m.feedback
    ]


def _last_model(conversation: Conversation) -> str | None:
    return next((m.model for m in reversed(conversation.messages) if m.model), None)
