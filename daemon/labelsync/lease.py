"""How long this daemon may act on what it holds in a shared state.

Several daemons on one PostgreSQL state claim conversations before they send
them, and each outbox row names the daemon that put it. Both carry a lease by
the database's clock: `lease_s` from the moment they were written or last
renewed. A thread of the daemon renews everything it holds every `renew_s`
while the process lives; if it dies, or loses the database, its leases run out
and another daemon takes over (claims are taken, outbox rows resolved by asking
Label Studio for their sync keys).

Fencing: an import must land (or have failed) before the lease of its outbox row
can run out, or another daemon could resolve the row as "not imported" and send
it again. An import started now is over by `guard_s` from now (the import
deadline, a margin for Label Studio finishing after the client gave up, and the
longest gap between two heartbeats). So while an import is under way,
`check()` (called from every heartbeat of Label Studio's requests and waits)
raises LeaseLost once the lease this daemon knows it holds ends sooner than
`guard_s`: no further request starts, and the outbox row is resolved later.

On SQLite (one daemon per state directory) nothing is leased and nothing runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from labelsync.state import State, StateError, StateUnavailable

log = logging.getLogger(__name__)

# The longest gap between two heartbeats while Label Studio is asked or waited for
# (connection.py beats every second during a request; delivery.py every 5 s in a pause).
_HEARTBEAT_GAP_S = 5.0


class LeaseLost(StateUnavailable):
    """This daemon can no longer be sure it holds its claims (the database is out of
    reach): it stops sending; what it holds is resolved once its lease is over."""


@dataclass(frozen=True)
class LeaseTimes:
    guard_s: float  # an import started now has landed or failed within this
    lease_s: float  # how long a claim or an outbox row is held without renewal
    renew_s: float  # how often the holder renews

    @classmethod
    def for_imports(cls, import_timeout_s: float, timeout_s: float) -> LeaseTimes:
        """The margin after the import deadline is the request timeout: how long the
        outbox of a single daemon has always waited before asking Label Studio."""
        guard = import_timeout_s + timeout_s + _HEARTBEAT_GAP_S
        renew = 5.0
        return cls(guard, guard + 3 * renew, renew)


class Leases:
    def __init__(
        self, state: State, times: LeaseTimes, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.state = state
        self.times = times
        self.clock = clock
        self._until = 0.0  # by `clock`: everything this daemon holds is surely held until then
        self._importing = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.state.shared

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="labelsync-leases", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(self.times.renew_s + 15)
            self._thread = None

    def _run(self) -> None:
        # Its own handle on the state (PostgreSQL: the same pool, another connection).
        while not self._closed.wait(self.times.renew_s):
            self.renew()

    def renew(self) -> None:
        started = self.clock()
        try:
            self.state.renew(self.times.lease_s)
        except StateError as exc:
            # Not fatal: the lease this daemon knows of keeps running out, and check() stops
            # imports before it does. The main loop meets the same outage and waits.
            log.debug("leases not renewed: %s", exc)
            return
        self.written(started)

    def written(self, started: float) -> None:
        """Claims or outbox rows were written (with a full lease) in a transaction that
        began at `started` (by `clock`)."""
        with self._lock:
            self._until = max(self._until, started + self.times.lease_s)

    @contextmanager
    def importing(self) -> Iterator[None]:
        """While an import this daemon's outbox holds is under way: check() fences."""
        with self._lock:
            self._importing += 1
        try:
            yield
        finally:
            with self._lock:
                self._importing -= 1

    def check(self) -> None:
        """Called from heartbeats: raises LeaseLost if an import may not start (or go on)."""
        if not self.active or not self._importing:
            return
        left = self._until - self.clock()
        if left < self.times.guard_s:
            raise LeaseLost(
                f"the state database has not confirmed this daemon's claims for "
                f"{self.times.lease_s - left:.0f} s: no import is started until it does "
                "(what was under way is resolved once its lease is over)"
            )
