"""Getting a batch of tasks into Label Studio: sizes, retries, unknown outcomes, bad items.

- A batch goes as imports whose bodies fit: each at most `max_request_bytes`
  (LABELSYNC_MAX_REQUEST_BYTES) and at most what a 413 taught (a reverse
  proxy's body limit). Bodies are encoded one import at a time, so memory is
  bounded by bytes, not by the batch's count.
- Retryable failures (connection, 408, 429, 5xx) are retried with jittered
  exponential backoff, honouring Retry-After, owned here with tenacity.
- After a failure whose outcome is unknown (the request may have been
  processed), the next attempt first asks Label Studio which sync keys it has,
  and only imports the rest: never blindly again. When Label Studio may still
  be working on it (our deadline or a gateway's 504 ended the wait), it keeps
  looking, with growing pauses, for `patience_s` before importing again.
- A 400 rejects the whole import, so it is halved until the bad items are
  alone; a 413 is halved the same way, and a single task is rejected only if
  it alone is too large. Rejected items are returned with a reason.
- Every wait is `stop.wait`, so a stop request cuts a backoff short.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
)

from labelsync.labelstudio import (
    BadTasks,
    LabelStudio,
    RequestTooLarge,
    Stopped,
    Unavailable,
    encode_task,
    import_body_bytes,
)

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "Delivered", "Delivery", "Outgoing", "Stopped"]

log = logging.getLogger(__name__)
R = TypeVar("R")

# Above one task made from a file at the LABELSYNC_MAX_FILE_BYTES default (10 MiB),
# far below Label Studio's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 250 MiB), and
# small enough that one import's body and its processing stay short.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
_LOOK_AGAIN_MAX_S = 30.0  # longest pause between two looks for a late import


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
    # sync_key -> reason: Label Studio (400) or a size limit (413, or
    # LABELSYNC_MAX_REQUEST_BYTES) refused the task; never a problem of the file's own.
    rejected: dict[str, str] = field(default_factory=dict)
    found_existing: int = 0  # resolved by asking Label Studio, not imported again


@dataclass(frozen=True)
class _Encoded:
    sync_key: str
    body: bytes


class Delivery:
    def __init__(
        self,
        ls: LabelStudio,
        stop: threading.Event,
        policy: RetryPolicy = RetryPolicy(),
        heartbeat: Callable[[], object] = lambda: None,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        patience_s: float | None = None,
    ) -> None:
        self._ls = ls
        self._stop = stop
        self._policy = policy
        # Called through every wait: the daemon's watchdog ping, so a long
        # backoff is not mistaken for a hung loop.
        self._heartbeat = heartbeat
        self.max_request_bytes = max_request_bytes
        # What 413s taught: the largest body to send from now on, and the largest
        # that went through (a 413 never lowers the cap below that).
        self.learnt_limit_bytes: int | None = None
        self._largest_ok = 0
        # How long an import of unknown outcome that may still be running is
        # looked for before it is sent again: as long again as its own deadline.
        self.patience_s = ls.import_timeout_s if patience_s is None else patience_s

    @property
    def limit_bytes(self) -> int:
        """The largest import body sent now: the setting, or less after a 413."""
        learnt = self.learnt_limit_bytes
        return self.max_request_bytes if learnt is None else min(learnt, self.max_request_bytes)

    def send(self, items: Sequence[Outgoing]) -> Delivered:
        """Import items; the outbox holds them until the result is recorded."""
        result = Delivered()
        for chunk in self._chunks(items, result):
            self._send(chunk, result)
            self._heartbeat()
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

    def resolve_late(self, sync_keys: Sequence[str], sent_at: float) -> dict[str, int]:
        """After a crash or a stop: which of these keys, imported at `sent_at` (wall
        clock) with an outcome never heard, Label Studio has.

        The import may still be running until its deadline has passed, and land
        as late as `patience_s` after that: until then, look again with growing
        pauses (one key a look) as after a timeout, instead of concluding from
        one look that it never happened.
        """
        keys = list(dict.fromkeys(sync_keys))
        pending = {key: _Encoded(key, b"") for key in keys}
        result = Delivered()
        left_s = sent_at + self._ls.import_timeout_s - time.time()
        failure = Unavailable(
            "an import interrupted by a crash or a stop",
            kind="timeout",
            outcome_unknown=True,
            in_flight=True,
        )
        self.call(
            lambda: self._find_late_import(pending, result, failure, time.monotonic() + left_s)
        )
        return result.task_ids

    # -- sizes ---------------------------------------------------------------------------
    def _chunks(self, items: Sequence[Outgoing], result: Delivered) -> Iterator[list[_Encoded]]:
        """Imports that fit, each encoded only when its turn comes; the limit is
        read again for every chunk, so a 413 in one caps the next."""
        chunk: list[_Encoded] = []
        size = 2
        for item in items:
            body = encode_task(item.task)
            if len(body) + 2 > self.max_request_bytes:
                result.rejected[item.sync_key] = (
                    f"the task is {len(body) + 2:,} bytes, over LABELSYNC_MAX_REQUEST_BYTES "
                    f"({self.max_request_bytes:,}); raise it (and any proxy's body limit) "
                    "to send this conversation"
                )
                continue
            if chunk and size + 1 + len(body) > self.limit_bytes:
                yield chunk
                chunk, size = [], 2
            size += len(body) + (1 if chunk else 0)
            chunk.append(_Encoded(item.sync_key, body))
        if chunk:
            yield chunk

    def _too_large(self, chunk: list[_Encoded], exc: RequestTooLarge) -> None:
        size = exc.body_bytes or import_body_bytes([e.body for e in chunk])
        if self._largest_ok >= size:  # the limit went down since: what went through is old news
            self._largest_ok = 0
        # The limit is below `size`; halving (but never below a body that went
        # through) finds it in a few steps, and the next sync starts there.
        cap = size - 1 if len(chunk) == 1 else max(size // 2, self._largest_ok)
        if cap < self.limit_bytes:
            self.learnt_limit_bytes = cap
            log.warning(
                "a %s-byte import was refused as too large (HTTP 413, a proxy's body limit?); "
                "sending at most %s bytes per import from now on",
                f"{size:,}",
                f"{cap:,}",
            )

    # -- imports -------------------------------------------------------------------------
    def _send(self, chunk: list[_Encoded], result: Delivered) -> None:
        try:
            self._import_retrying(chunk, result)
            return
        except BadTasks as exc:
            problem: Exception = exc
        except RequestTooLarge as exc:
            self._too_large(chunk, exc)
            problem = exc
        rest = [e for e in chunk if e.sync_key not in result.task_ids]
        if len(rest) == 1:
            result.rejected[rest[0].sync_key] = _reason(problem, import_body_bytes([rest[0].body]))
            return
        middle = len(rest) // 2
        # A 400 or a 413 means nothing of this import was imported: the halves start clean.
        self._send(rest[:middle], result)
        self._send(rest[middle:], result)

    def _import_retrying(self, chunk: list[_Encoded], result: Delivered) -> None:
        pending = {item.sync_key: item for item in chunk}
        unknown: Unavailable | None = None  # the last failure that may have imported anyway
        unknown_at = 0.0
        for attempt in self._retrying():
            with attempt:
                if unknown is not None:
                    self._find_late_import(pending, result, unknown, unknown_at)
                    unknown = None
                if not pending:
                    return
                encoded = [item.body for item in pending.values()]
                try:
                    ids = self._ls.import_encoded(encoded)
                except Unavailable as exc:
                    if exc.outcome_unknown:
                        unknown, unknown_at = exc, time.monotonic()
                    raise
                self._largest_ok = max(self._largest_ok, import_body_bytes(encoded))
                result.task_ids.update(zip(pending, ids, strict=True))
                return

    def _find_late_import(
        self,
        pending: dict[str, _Encoded],
        result: Delivered,
        failure: Unavailable,
        failed_at: float,
    ) -> None:
        """Find what an import of unknown outcome imported, before importing again.

        Label Studio commits an import in one transaction, so one key of it being
        there means all of it is. If Label Studio may still be working on it,
        keep looking (one key a look, all keys the first and last time) with
        growing pauses until `patience_s` after the failure.
        """
        keys = list(pending)
        give_up_at = failed_at + (self.patience_s if failure.in_flight else 0.0)
        if failure.in_flight and time.monotonic() < give_up_at:
            log.warning(
                "%d tasks: import of unknown outcome (%s); looking for them in Label Studio "
                "for up to %.0f s before sending them again",
                len(keys),
                failure,
                give_up_at - time.monotonic(),
            )
        pause_s, first = 1.0, True
        while True:
            last = time.monotonic() >= give_up_at
            found = self._ls.find_sync_keys(keys if first or last else keys[:1])
            if found and not (first or last):
                found = self._ls.find_sync_keys(keys)
            if found and len(found) < len(keys):
                # A look at many keys is several requests: the import may have
                # committed between two of them. Part of it there means all of it is.
                found.update(self._ls.find_sync_keys([k for k in keys if k not in found]))
            if found or last:
                break
            first = False
            self.pause(min(pause_s, max(0.0, give_up_at - time.monotonic())))
            pause_s = min(pause_s * 2, _LOOK_AGAIN_MAX_S)
        result.task_ids.update(found)
        result.found_existing += len(found)
        for key in found:
            del pending[key]

    # -- retries -------------------------------------------------------------------------
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
        """Jittered exponential backoff, never sooner than Retry-After."""
        ceiling = min(self._policy.max_s, self._policy.initial_s * 2 ** (state.attempt_number - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Unavailable) and exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        return delay

    def pause(self, seconds: float) -> None:
        """Wait, cut short by a stop request (raises Stopped), keeping the heartbeat."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, 5.0)):
                raise Stopped()
            self._heartbeat()
        if self._stop.is_set():
            raise Stopped()

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Label Studio unavailable (%s); retry %d in %.1f s", exc, state.attempt_number, delay
        )


def _reason(problem: Exception, size: int) -> str:
    if isinstance(problem, RequestTooLarge):
        return (
            f"the task alone ({size:,} bytes) is over the request size limit of Label Studio "
            "or a proxy in front of it (HTTP 413; e.g. nginx's client_max_body_size, "
            "1 MiB by default): raise that limit to send this conversation"
        )
    return str(problem)
