"""A conversation as the chatbot records it, and its shape in the labelsync contract.

Pure: no IO, no Chainlit. Time is passed in. The Chainlit app owns one
`Conversation` per chat and hands `to_contract(...)` to the writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CONTRACT = "labelsync/1"
APP_NAME = "labelsync-chatbot"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Feedback:
    score: int  # 1 = thumbs up, 0 = thumbs down (Chainlit's values)
    comment: str | None = None


@dataclass
class Message:
    # Chainlit's message (step) id: how feedback finds its message, and how an
    # edited user message finds where the conversation forks. Stable across
    # rewrites, so it never makes the daemon see a change that is not one.
    id: str
    role: str  # "user" | "assistant"
    content: str
    timestamp: str
    feedback: Feedback | None = None


@dataclass
class Conversation:
    thread_id: str
    session_id: str
    user: str | None = None
    model: str | None = None
    provider: str | None = None
    ended: bool = False
    messages: list[Message] = field(default_factory=list)

    @property
    def turn_count(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    @property
    def has_reply(self) -> bool:
        return any(m.role == "assistant" for m in self.messages)


def add_user_message(conv: Conversation, message_id: str, content: str, at: datetime) -> None:
    """Record what the user said. A known id is an edit: Chainlit drops every
    later message and answers again, so the conversation forks there too."""
    for index, message in enumerate(conv.messages):
        if message.id == message_id:
            del conv.messages[index:]
            break
    conv.messages.append(Message(message_id, "user", content, iso_utc(at)))
    # Saying something after "end" reopens the conversation.
    conv.ended = False


def add_assistant_message(
    conv: Conversation, message_id: str, content: str, at: datetime, *, model: str, provider: str
) -> None:
    """Record a complete reply. Interrupted replies are never passed here."""
    conv.messages.append(Message(message_id, "assistant", content, iso_utc(at)))
    conv.model = model
    conv.provider = provider


def set_feedback(conv: Conversation, message_id: str, score: int, comment: str | None) -> bool:
    """Attach the user's thumbs up/down to a message; False if the message is not
    in the recorded conversation (e.g. an error notice, which is never recorded)."""
    for message in conv.messages:
        if message.id == message_id:
            message.feedback = Feedback(1 if score else 0, comment or None)
            return True
    return False


def end(conv: Conversation) -> None:
    conv.ended = True


def provider_messages(conv: Conversation, system_prompt: str) -> list[dict[str, str]]:
    """The history sent to a model: the system prompt, then every recorded turn."""
    history = [{"role": "system", "content": system_prompt}] if system_prompt else []
    history += [{"role": m.role, "content": m.content} for m in conv.messages]
    return history


def to_contract(conv: Conversation, now: datetime) -> dict[str, Any]:
    """The file contents (daemon/labelsync/schema/conversation.v1.schema.json)."""
    data: dict[str, Any] = {
        "contract": CONTRACT,
        "thread_id": conv.thread_id,
        "session_id": conv.session_id,
    }
    if conv.model is not None:
        data["model"] = conv.model
    if conv.provider is not None:
        data["provider"] = conv.provider
    data["timestamp"] = iso_utc(now)
    data["messages"] = [_message_to_contract(m) for m in conv.messages]
    data["turn_count"] = conv.turn_count
    data["ended"] = conv.ended
    if conv.user is not None:
        data["user"] = conv.user
    data["metadata"] = {"thread_id": conv.thread_id, "app": APP_NAME}
    return data


def _message_to_contract(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "timestamp": message.timestamp,
    }
    if message.feedback is not None:
        out["feedback"] = {"score": message.feedback.score, "comment": message.feedback.comment}
    return out


def from_contract(data: dict[str, Any], *, session_id: str) -> Conversation:
    """Rebuild a conversation from its file, to continue it after a resume."""
    thread_id = str((data.get("metadata") or {}).get("thread_id") or data["thread_id"])
    messages = []
    for index, raw in enumerate(data.get("messages") or []):
        fb = raw.get("feedback")
        messages.append(
            Message(
                id=str(raw.get("id") or f"{thread_id}-{index}"),
                role=str(raw["role"]),
                content=str(raw["content"]),
                timestamp=str(raw.get("timestamp") or ""),
                feedback=Feedback(int(fb["score"]), fb.get("comment")) if fb else None,
            )
        )
    user = data.get("user")
    return Conversation(
        thread_id=thread_id,
        session_id=session_id,
        user=user if isinstance(user, str) else None,
        model=data.get("model"),
        provider=data.get("provider"),
        ended=False,  # resuming means the user is back
        messages=messages,
    )
