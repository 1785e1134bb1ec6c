"""The shape of a Label Studio task made from one version of a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelsync.contract import Conversation


@dataclass(frozen=True)
class TaskDraft:
    """A task but for its version number, which only planning can give.

    Built on the engine's reader thread, so the import loop only numbers it.
    """

    data: dict[str, Any]
    meta: dict[str, Any]

    def numbered(self, version: int) -> dict[str, Any]:
        thread_id = self.data["thread_id"]
        data = {**self.data, "version": version, "session_id": f"{thread_id}_v{version}"}
        return {"data": data, "meta": self.meta}


def draft_task(conversation: Conversation, source_file: str) -> TaskDraft:
    """`data` is what the template and the Data Manager use; `meta` keeps the rest.

    `sync_key` lives in `data` (not `meta`) because Label Studio can filter on
    `data.<key>` but answers 500 to a filter on `meta`: it is how an import of
    unknown outcome is looked up.
    """
    chat = []
    for m in conversation.messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.model:
            item["model"] = m.model
        chat.append(item)
    data: dict[str, Any] = {
        "chat": chat,
        "thread_id": conversation.thread_id,
        "model": conversation.model or _last_model(conversation) or "",
        "turn_count": conversation.user_turns,
        "timestamp": conversation.timestamp or "",
        "source_file": source_file,
        "sync_key": conversation.sync_key,
        "feedback": feedback_summary(conversation),
    }
    meta: dict[str, Any] = {"labelsync": {"shape": conversation.shape, "ended": conversation.ended}}
    if conversation.title:
        meta["labelsync"]["title"] = conversation.title
    meta.update(conversation.extra)
    times = [m.timestamp for m in conversation.messages]
    if any(times):
        meta["message_timestamps"] = times
    return TaskDraft(data, meta)


def build_task(conversation: Conversation, version: int, source_file: str) -> dict[str, Any]:
    """The task for one version of a conversation: data.chat, thread_id, version, ..."""
    return draft_task(conversation, source_file).numbered(version)


def feedback_summary(conversation: Conversation) -> str:
    """The chat user's own thumbs and comments, as one readable line per message."""
    lines = []
    for index, message in enumerate(conversation.messages, start=1):
        fb = message.feedback
        if not fb:
            continue
        score = fb.get("score")
        verdict = {1: "thumbs up", 0: "thumbs down"}.get(score, f"score {score}")  # type: ignore[arg-type]
        comment = fb.get("comment")
        line = f"message {index} ({message.role}): {verdict}"
        lines.append(f"{line}: {comment}" if comment else line)
    return "\n".join(lines) if lines else "no feedback from the chat user"


def _last_model(conversation: Conversation) -> str | None:
    return next((m.model for m in reversed(conversation.messages) if m.model), None)
