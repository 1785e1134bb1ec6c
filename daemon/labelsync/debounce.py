"""Per-file debouncing to quiescence, with the clock passed in.

A file being written by a live chat changes every few seconds; sending it on
every change would make a version per reply. So each file waits until it has
been quiet for ``quiet_s``. Two escapes from that wait (Syncthing's
watchaggregator keeps the same two clocks):

- ``max_wait_s`` after the first change of a burst, the file is due even if it
  is still changing, so a chat that never pauses still reaches Label Studio;
- a file marked *ended* (its content says the conversation is over) is due
  after the short ``settle_s`` instead of the full quiet period.

Pure: no sleeps, no IO, no clock of its own. Pass ``time.monotonic()`` as
``now`` (wall-clock jumps would otherwise release or hold back every file).
Not thread-safe: the run loop owns it; the watcher hands it hints through a
queue.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# Paths are opaque keys here: the daemon uses pathlib.Path, tests use str.
Key = TypeVar("Key", bound=Hashable)


@dataclass
class _Burst:
    first: float  # first unsettled hint: starts the max_wait clock
    last: float  # latest hint: restarts the quiet clock
    ended: bool = False
    generation: int = 0  # which heap entry is current (older ones are stale)


@dataclass
class Debouncer(Generic[Key]):
    quiet_s: float
    max_wait_s: float
    settle_s: float = 1.0
    _bursts: dict[Key, _Burst] = field(default_factory=dict, init=False, repr=False)
    # (deadline, generation, key): a lazy-deletion heap, so 100,000 pending files
    # from a start-up scan cost O(log n) per hint instead of a scan per wake-up.
    _heap: list[tuple[float, int, Key]] = field(default_factory=list, init=False, repr=False)
    _generation: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.quiet_s > 0:
            raise ValueError(f"quiet_s must be > 0, got {self.quiet_s}")
        if not self.max_wait_s >= self.quiet_s:
            raise ValueError(f"max_wait_s ({self.max_wait_s}) must be >= quiet_s ({self.quiet_s})")
        if not 0 <= self.settle_s <= self.quiet_s:
            raise ValueError(f"settle_s must be between 0 and quiet_s, got {self.settle_s}")

    def touch(self, path: Key, now: float, *, ended: bool = False) -> None:
        """Record a hint that ``path`` changed (or, with ``ended``, that its content ends the chat).

        ``ended`` sticks until the file is due or forgotten: the trailing hints
        of the very write that carried the marker (modified, then closed) must
        not undo it. A file that keeps changing after its end mark is pushed
        out by ``settle_s`` per change; if it really reopened, the engine sends
        it as a new version anyway.

        Calling ``touch`` again for a file that turned out half-written when it
        came due simply waits for it once more.
        """
        burst = self._bursts.get(path)
        if burst is None:
            burst = self._bursts[path] = _Burst(first=now, last=now)
        else:
            burst.last = max(burst.last, now)
        burst.ended = burst.ended or ended
        self._generation += 1
        burst.generation = self._generation
        heapq.heappush(self._heap, (self._deadline(burst), burst.generation, path))
        self._compact_if_bloated()

    def forget(self, path: Key) -> None:
        """Drop a pending file (it was deleted before it settled)."""
        self._bursts.pop(path, None)
        self._compact_if_bloated()

    def due(self, now: float) -> list[Key]:
        """Pop the files whose deadline has come, oldest deadline first.

        Each burst of changes makes its file due exactly once; a later hint
        starts a new burst.
        """
        ready: list[Key] = []
        while self._heap and self._heap[0][0] <= now:
            _, generation, path = heapq.heappop(self._heap)
            burst = self._bursts.get(path)
            if burst is not None and burst.generation == generation:
                del self._bursts[path]
                ready.append(path)
        return ready

    def next_deadline(self) -> float | None:
        """When the next file will be due (for ``stop.wait``); None when nothing waits."""
        while self._heap:
            _, generation, path = self._heap[0]
            burst = self._bursts.get(path)
            if burst is not None and burst.generation == generation:
                return self._heap[0][0]
            heapq.heappop(self._heap)
        return None

    def __len__(self) -> int:
        """The backlog: files waiting to settle."""
        return len(self._bursts)

    def __contains__(self, path: object) -> bool:
        return path in self._bursts

    def _deadline(self, burst: _Burst) -> float:
        wait_s = self.settle_s if burst.ended else self.quiet_s
        return min(burst.last + wait_s, burst.first + self.max_wait_s)

    def _compact_if_bloated(self) -> None:
        # A file rewritten many times a second leaves a stale heap entry per
        # write; rebuild once they outnumber the live ones, to bound memory.
        if len(self._heap) > 2 * len(self._bursts) + 64:
            self._heap = [
                (self._deadline(burst), burst.generation, path)
                for path, burst in self._bursts.items()
            ]
            heapq.heapify(self._heap)
