"""What Chainlit's data layer kept of a thread, read back for a resume.

Pure: a `ThreadDict` in, plain values out. Only steps the app marked as
recorded count (step metadata `"labelsync": "recorded"`): a user message is
marked once its reply is complete, so failed attempts, error notices and
notes from the chat never come back as conversation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from labelsync_chatbot.conversation import Conversation, Message, iso_utc

RECORDED = "recorded"  # step metadata "labelsync": this message is in the file
_ROLES = {"user_message": "user", "assistant_message": "assistant"}


def step_metadata(step: Mapping[str, Any]) -> dict[str, Any]:
    # Chainlit's SQLAlchemy data layer hands metadata back as a JSON string.
    raw = step.get("metadata") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _recorded(step: Mapping[str, Any]) -> bool:
    return not step.get("isError") and step_metadata(step).get("labelsync") == RECORDED


def feedback_targets(thread: Mapping[str, Any]) -> dict[str, str]:
    """Chainlit's thumbs rate the run (the on_message step); map each run to the
    recorded reply it produced."""
    return {
        step["parentId"]: step["id"]
        for step in thread.get("steps") or []
        if step.get("type") == "assistant_message" and step.get("parentId") and _recorded(step)
    }


def conversation_from_thread(
    thread: Mapping[str, Any], *, session_id: str, system_prompt: str, now: datetime
) -> Conversation:
    """The file is gone (e.g. the watch dir was emptied): rebuild it from the
    data layer. The first session is unknown then; this one starts the list."""
    conv = Conversation(
        thread_id=str(thread["id"]), session_id=session_id, system_prompt=system_prompt
    )
    for step in thread.get("steps") or []:
        role = _ROLES.get(step.get("type", ""))
        if role is None or not _recorded(step):
            continue
        metadata = step_metadata(step)
        at = datetime.fromisoformat(step.get("createdAt") or now.isoformat())
        conv.messages.append(
            Message(
                str(step["id"]), role, step.get("output") or "", iso_utc(at),
                model=metadata.get("model"), provider=metadata.get("provider"),
            )
        )
    if conv.messages:
        conv.started_at = conv.messages[0].timestamp
    return conv
