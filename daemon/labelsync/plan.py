"""Decide, without IO, what each parsed file means for Label Studio.

Rules:
- content already sent for that conversation (any version): Skip;
- fewer user turns than min_turns: Wait (sent once it grows);
- otherwise: NewVersion N+1 (older tasks and their annotations stay);
- a file that could not be parsed: Quarantine (tried again when it changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from labelsync.contract import Conversation, InvalidConversation

T = TypeVar("T")


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class NewVersion:
    version: int


@dataclass(frozen=True)
class Quarantine:
    reason: str


Decision = Skip | Wait | NewVersion | Quarantine


def decide(
    parsed: Conversation | InvalidConversation,
    sent: Mapping[str, int],
    min_turns: int,
) -> Decision:
    """sent: sync_key -> version, for every version of this conversation known so far."""
    if isinstance(parsed, InvalidConversation):
        return Quarantine(parsed.reason)
    version = sent.get(parsed.sync_key)
    if version is not None:
        return Skip(f"same content as version {version}")
    if parsed.user_turns < min_turns:
        return Wait(f"{parsed.user_turns} of {min_turns} user turns (LABELSYNC_MIN_TURNS)")
    return NewVersion(max(sent.values(), default=0) + 1)


def plan(
    items: Iterable[tuple[T, Conversation | InvalidConversation]],
    sent_by_thread: Mapping[str, Mapping[str, int]],
    min_turns: int,
) -> Iterator[tuple[T, Decision]]:
    """Decide a batch in order, so two files of one conversation become v1 then v2.

    Items are anything the caller wants back (usually the file read) paired with
    the parse result. `sent_by_thread` is not modified.
    """
    working: dict[str, dict[str, int]] = {}
    for item, parsed in items:
        if isinstance(parsed, InvalidConversation):
            yield item, Quarantine(parsed.reason)
            continue
        thread = parsed.thread_id
        if thread not in working:
            working[thread] = dict(sent_by_thread.get(thread, {}))
        decision = decide(parsed, working[thread], min_turns)
        if isinstance(decision, NewVersion):
            working[thread][parsed.sync_key] = decision.version
        yield item, decision
