"""Decide, without IO, what each conversation read means for Label Studio.

Rules, in order:
- could not be read: Quarantine (tried again when its file changes);
- content already sent for that conversation (any version): Skip, or
  UpdateFeedback when only the chat user's feedback changed (a thumbs-up
  given later is not a new version);
- fewer user turns than min_turns: Wait while it can still grow, else
  TooShort (an export or dataset row, an ended chat, or one quiet past the
  max wait), with the setting that would send it;
- otherwise: NewVersion N+1 (older tasks and their annotations stay).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from labelsync.contract import Conversation, InvalidConversation
from labelsync.state import VersionRecord

T = TypeVar("T")


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class UpdateFeedback:
    """Same dialogue as a sent version, new feedback from the chat user."""

    version: VersionRecord


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class TooShort:
    reason: str


@dataclass(frozen=True)
class NewVersion:
    version: int


@dataclass(frozen=True)
class Quarantine:
    reason: str


Decision = Skip | UpdateFeedback | Wait | TooShort | NewVersion | Quarantine

# Why a short conversation will not grow (Conversation.final, ended, quiet).
FINAL, ENDED, QUIET = "it came from an export or a dataset", "it has ended", "it has been quiet"


def decide(
    parsed: Conversation | InvalidConversation,
    versions: Iterable[VersionRecord],
    min_turns: int,
    settled: str | None = None,
) -> Decision:
    """versions: every version of this conversation known so far (in this project).

    settled: why this conversation cannot grow any more, if it cannot (FINAL,
    ENDED, QUIET); None while it may still get turns.
    """
    if isinstance(parsed, InvalidConversation):
        return Quarantine(parsed.reason)
    known = list(versions)
    for record in known:
        if record.sync_key in (parsed.sync_key, parsed.legacy_key):
            if record.sync_key == parsed.sync_key and record.feedback_key != parsed.feedback_key:
                return UpdateFeedback(record)
            return Skip(f"same content as version {record.version}")
    if parsed.user_turns < min_turns:
        turns = f"{parsed.user_turns} of {min_turns} user turns"
        if settled is None:
            return Wait(f"{turns} (LABELSYNC_MIN_TURNS): sent when it grows")
        return TooShort(
            f"{turns} and {settled} (LABELSYNC_MIN_TURNS={max(parsed.user_turns, 1)} would send it)"
        )
    return NewVersion(max((v.version for v in known), default=0) + 1)


def plan(
    items: Iterable[tuple[T, Conversation | InvalidConversation, str | None]],
    known: Mapping[str, list[VersionRecord]],
    min_turns: int,
) -> Iterator[tuple[T, Decision]]:
    """Decide a batch in order, so two states of one conversation become v1 then v2.

    Items are (anything the caller wants back, the parse result, why it is
    settled). `known` (thread id -> versions) is not modified.
    """
    working: dict[str, list[VersionRecord]] = {}
    for item, parsed, settled in items:
        if isinstance(parsed, InvalidConversation):
            yield item, Quarantine(parsed.reason)
            continue
        thread = parsed.thread_id
        if thread not in working:
            working[thread] = list(known.get(thread, ()))
        decision = decide(parsed, working[thread], min_turns, settled)
        if isinstance(decision, NewVersion):
            # Stands for the version until it is recorded; project and task are the engine's.
            working[thread].append(
                VersionRecord(
                    0, thread, decision.version, parsed.sync_key, 0, "", parsed.feedback_key
                )
            )
        yield item, decision
