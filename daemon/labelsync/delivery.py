"""Getting a batch of tasks into Label Studio: retries, unknown outcomes, bad items.

- Retryable failures (connection, 408, 429, 5xx) are retried with jittered
  exponential backoff, honouring Retry-After, owned here with tenacity.
- After a failure whose outcome is unknown (the request may have been
  processed), the next attempt first asks Label Studio which sync keys it has,
  and only imports the rest: never blindly again.
- A 400 rejects the whole batch, so the batch is halved until the bad items
  are alone; they are returned as rejected, the others are imported.
- Every wait is `stop.wait`, so a stop request cuts a backoff short.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
)

from labelsync.labelstudio import BadTasks, LabelStudio, Unavailable

log = logging.getLogger(__name__)
R = TypeVar("R")


class Stopped(Exception):
    """A stop was requested while waiting to retry; the outbox keeps the batch safe."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = 8  # None: forever (the daemon)
    initial_s: float = 1.0
    max_s: float = 60.0


@dataclass(frozen=True)
class Outgoing:
    sync_key: str
    task: dict[str, Any]


@dataclass
class Delivered:
    task_ids: dict[str, int] = field(default_factory=dict)  # sync_key -> task id
    rejected: dict[str, str] = field(default_factory=dict)  # sync_key -> reason
    found_existing: int = 0  # resolved by asking Label Studio, not imported again


class Delivery:
    def __init__(
        self,
        ls: LabelStudio,
        stop: threading.Event,
        policy: RetryPolicy = RetryPolicy(),
        heartbeat: Callable[[], object] = lambda: None,
    ) -> None:
        self._ls = ls
        self._stop = stop
        self._policy = policy
        # Called through every wait: the daemon's watchdog ping, so a long
        # backoff is not mistaken for a hung loop.
        self._heartbeat = heartbeat

    def send(self, items: Sequence[Outgoing]) -> Delivered:
        """Import items; the outbox holds them until the result is recorded."""
        result = Delivered()
        self._send(list(items), result)
        return result

    def call(self, fn: Callable[[], R]) -> R:
        """A read-only call (safe to repeat) under the same retry policy."""
        for attempt in self._retrying():
            with attempt:
                return fn()
        raise AssertionError("unreachable: tenacity reraises")

    def resolve(self, sync_keys: Sequence[str]) -> dict[str, int]:
        """Which of these keys Label Studio has (sync_key -> task id), retrying."""
        return self.call(lambda: self._ls.find_sync_keys(sync_keys))

    def _send(self, items: list[Outgoing], result: Delivered) -> None:
        try:
            self._import_retrying(items, result)
        except BadTasks as exc:
            if len(items) == 1:
                result.rejected[items[0].sync_key] = str(exc)
                return
            middle = len(items) // 2
            # A 400 means nothing of this batch was imported: the halves start clean.
            self._send(items[:middle], result)
            self._send(items[middle:], result)

    def _import_retrying(
        self, items: list[Outgoing], result: Delivered
    ) -> None:
        pending = {item.sync_key: item for item in items}
        unknown = False  # set after a failure that may have imported anyway
        for attempt in self._retrying():
            with attempt:
                if unknown:
                    found = self._ls.find_sync_keys(pending)
                    result.task_ids.update(found)
                    result.found_existing += len(found)
                    for key in found:
                        del pending[key]
                    unknown = False
                if not pending:
                    return
                try:
                    ids = self._ls.import_tasks([item.task for item in pending.values()])
                except Unavailable as exc:
                    unknown = exc.outcome_unknown
                    raise
                result.task_ids.update(zip(pending, ids, strict=True))
                return

    def _retrying(self) -> Retrying:
        policy = self._policy
        return Retrying(
            retry=retry_if_exception_type(Unavailable),
            stop=stop_never if policy.attempts is None else stop_after_attempt(policy.attempts),
            wait=self._wait,
            sleep=self.pause,
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        """Jittered exponential backoff, never sooner than Retry-After.

        After an import that timed out, Label Studio may still be working on it:
        wait one more request timeout before asking which keys it has, as after
        a crash (engine._resolve_outbox), so a late import is found, not repeated.
        """
        ceiling = min(self._policy.max_s, self._policy.initial_s * 2 ** (state.attempt_number - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Unavailable):
            if exc.retry_after_s is not None:
                delay = max(delay, exc.retry_after_s)
            if exc.kind == "timeout" and exc.outcome_unknown:
                delay = max(delay, self._ls.timeout_s)
        return delay

    def pause(self, seconds: float) -> None:
        """Wait, cut short by a stop request (raises Stopped), keeping the heartbeat."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, 5.0)):
                raise Stopped()
            self._heartbeat()

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Label Studio unavailable (%s); retry %d in %.1f s", exc, state.attempt_number, delay
        )
