"""A conversation as the chatbot records it, and its shape in the labelsync contract.

Pure: no IO, no Chainlit. Time is passed in. The Chainlit app owns one
`Conversation` per chat and hands `to_contract(...)` to the writer.

A turn (the user's message and the reply to it) is recorded only once the reply
is complete (`record_turn`). A failed reply leaves the conversation exactly as
the user last saw it succeed, so sending the same message again records it once,
and the file never holds two user messages in a row because of an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

CONTRACT = "labelsync/1"
APP_NAME = "labelsync-chatbot"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Feedback:
    score: int  # 1 = thumbs up, 0 = thumbs down (Chainlit's values)
    comment: str | None = None
    at: str | None = None  # when it was given; None in files written before it was recorded


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
    # Who wrote an assistant message: the model can change mid-conversation.
    model: str | None = None
    provider: str | None = None


@dataclass
class Conversation:
    thread_id: str
    # The session that started the conversation; `sessions` is every session
    # that wrote to it, in order. `current_session` is the one chatting now: it
    # joins `sessions` in the file once it writes.
    session_id: str
    current_session: str = ""
    sessions: list[str] = field(default_factory=list)
    user: str | None = None
    system_prompt: str | None = None
    started_at: str | None = None
    ended: bool = False
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.current_session = self.current_session or self.session_id

    @property
    def turn_count(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    @property
    def latest_reply(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.role == "assistant"), None)


def _kept_before(conv: Conversation, user_message_id: str) -> list[Message]:
    """The recorded messages a new user message follows. A known id is an edit:
    Chainlit drops every later message and answers again, so the conversation
    forks there too."""
    for index, message in enumerate(conv.messages):
        if message.id == user_message_id:
            return conv.messages[:index]
    return conv.messages


def history_for(
    conv: Conversation, user_message_id: str, content: str
) -> list[dict[str, str]]:
    """What the model is sent to answer a new user message: the system prompt,
    the recorded turns it follows, then the message. Nothing is recorded yet."""
    history = [{"role": "system", "content": conv.system_prompt}] if conv.system_prompt else []
    history += [{"role": m.role, "content": m.content} for m in _kept_before(conv, user_message_id)]
    history.append({"role": "user", "content": content})
    return history


@dataclass(frozen=True)
class Said:
    """One side of a turn, as it happened."""

    id: str
    content: str
    at: datetime


def record_turn(
    conv: Conversation, question: Said, answer: Said, *, model: str, provider: str
) -> None:
    """Record a complete turn: the user's message and the whole reply to it.
    Interrupted or failed replies are never passed here, and neither is their
    user message."""
    conv.messages = [
        *_kept_before(conv, question.id),
        Message(question.id, "user", question.content, iso_utc(question.at)),
        Message(
            answer.id, "assistant", answer.content, iso_utc(answer.at),
            model=model, provider=provider,
        ),
    ]
    if conv.started_at is None:
        conv.started_at = iso_utc(question.at)
    # Saying something after "end" reopens the conversation.
    conv.ended = False


FeedbackOutcome = Literal["recorded", "unchanged", "not recorded"]


def set_feedback(
    conv: Conversation, message_id: str, score: int, comment: str | None, at: datetime
) -> FeedbackOutcome:
    """Attach the user's thumbs up/down to a message. "not recorded": the message
    is not in the recorded conversation. "unchanged": the same rating sent again
    keeps its first time, so it never looks like new content."""
    for message in conv.messages:
        if message.id == message_id:
            new = Feedback(1 if score else 0, comment or None, iso_utc(at))
            old = message.feedback
            if old is not None and (old.score, old.comment) == (new.score, new.comment):
                return "unchanged"
            message.feedback = new
            return "recorded"
    return "not recorded"


def end(conv: Conversation) -> None:
    conv.ended = True


def to_contract(conv: Conversation, now: datetime) -> dict[str, Any]:
    """The file contents (daemon/labelsync/schema/conversation.v1.schema.json)."""
    sessions = list(conv.sessions)
    if conv.current_session not in sessions:
        sessions.append(conv.current_session)
    data: dict[str, Any] = {
        "contract": CONTRACT,
        "thread_id": conv.thread_id,
        "session_id": conv.session_id,
        "sessions": sessions,
    }
    latest = conv.latest_reply
    # The latest reply's model, for readers that only know the top-level field.
    if latest is not None and latest.model is not None:
        data["model"] = latest.model
    if latest is not None and latest.provider is not None:
        data["provider"] = latest.provider
    if conv.system_prompt is not None:
        data["system_prompt"] = conv.system_prompt
    if conv.started_at is not None:
        data["started_at"] = conv.started_at
    data["timestamp"] = iso_utc(now)  # when this file was last saved
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
    if message.model is not None:
        out["model"] = message.model
    if message.provider is not None:
        out["provider"] = message.provider
    if message.feedback is not None:
        feedback: dict[str, Any] = {
            "score": message.feedback.score,
            "comment": message.feedback.comment,
        }
        if message.feedback.at is not None:
            feedback["at"] = message.feedback.at
        out["feedback"] = feedback
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def from_contract(
    data: dict[str, Any], *, session_id: str, system_prompt: str | None
) -> Conversation:
    """Rebuild a conversation from its file, to continue it after a resume.

    Files written before a field existed still resume: their top-level model
    named the latest reply's model, so it goes on the latest reply only (earlier
    replies stay unknown rather than wrongly attributed); a missing start is the
    first message's time; a missing system prompt is today's (`system_prompt`)."""
    thread_id = str((data.get("metadata") or {}).get("thread_id") or data["thread_id"])
    messages = []
    for index, raw in enumerate(data.get("messages") or []):
        messages.append(
            Message(
                id=str(raw.get("id") or f"{thread_id}-{index}"),
                role=str(raw["role"]),
                content=str(raw["content"]),
                timestamp=str(raw.get("timestamp") or ""),
                feedback=_feedback_from_contract(raw.get("feedback")),
                model=_text(raw.get("model")),
                provider=_text(raw.get("provider")),
            )
        )
    latest = next((m for m in reversed(messages) if m.role == "assistant"), None)
    if latest is not None and latest.model is None:
        latest.model, latest.provider = _text(data.get("model")), _text(data.get("provider"))
    first_session = _text(data.get("session_id")) or session_id
    sessions = [s for s in data.get("sessions") or [] if isinstance(s, str)] or [first_session]
    user = data.get("user")
    recorded_prompt = data.get("system_prompt")
    first_said = _text(messages[0].timestamp) if messages else None
    started_at = _text(data.get("started_at")) or first_said
    return Conversation(
        thread_id=thread_id,
        session_id=first_session,
        current_session=session_id,
        sessions=sessions,
        user=user if isinstance(user, str) else None,
        system_prompt=recorded_prompt if isinstance(recorded_prompt, str) else system_prompt,
        started_at=started_at,
        ended=False,  # resuming means the user is back
        messages=messages,
    )


def _feedback_from_contract(raw: Any) -> Feedback | None:
    if not isinstance(raw, dict) or "score" not in raw:
        return None
    return Feedback(int(raw["score"]), _text(raw.get("comment")), _text(raw.get("at")))
