"""A thin watchdog adapter: filesystem events in, path hints out.

Events are hints, not truth. inotify drops events on queue overflow without a
word (gorakhargosh/watchdog #654) and the polling observer sees only snapshots,
so the daemon reconciles with directory scans, and a hint only says "look at
this path again": the consumer stats the file and either debounces it (it
exists) or forgets it (it is gone). That is why a deletion is the same hint
as a change.

Hints are delivered on the observer's thread through ``on_hint``; pass
``queue.put`` to hand them to the run loop.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_module
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from labelsync.files import wanted

log = logging.getLogger(__name__)

# watchdog says nothing to handlers when the kernel's inotify queue overflows:
# it only logs this warning (watchdog/observers/inotify_c.py). Hearing it is how
# a watcher knows events were lost and a rescan is due.
_WATCHDOG_LOGGER = "watchdog.observers.inotify_c"
_OVERFLOW_TEXT = "queue overflowed"

# Only events that can mean new content. Opened/closed-without-write are left
# out on purpose: the daemon reading a file would otherwise hint itself.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
]


class WatcherError(Exception):
    """The watch could not be set up; the message says what to do."""


class Watcher:
    """Watches ``root`` and calls ``on_hint(path)`` for files matching ``pattern``."""

    def __init__(
        self,
        root: Path,
        on_hint: Callable[[Path], object],
        *,
        patterns: tuple[str, ...] = ("*.json", "*.jsonl"),
        recursive: bool = False,
        polling: bool = False,
        polling_interval_s: float = 2.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.patterns = patterns
        self.recursive = recursive
        self._on_hint = on_hint
        self.overflowed = threading.Event()  # events were lost: the owner should rescan
        self._root_inode: int | None = None
        self._overflow_hook = _OverflowHook(self.overflowed)
        self._observer: BaseObserver = (
            PollingObserver(timeout=polling_interval_s) if polling else Observer()
        )
        self._observer.schedule(
            _Handler(self), str(self.root), recursive=recursive, event_filter=_EVENTS
        )

    def start(self) -> None:
        if not self.root.is_dir():
            raise WatcherError(f"watch directory {self.root} does not exist or is not a directory")
        self._root_inode = _inode(self.root)
        logging.getLogger(_WATCHDOG_LOGGER).addHandler(self._overflow_hook)
        try:
            self._observer.start()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise WatcherError(
                    "the inotify watch limit is reached; raise fs.inotify.max_user_watches "
                    "or use polling (LABELSYNC_POLLING=true)"
                ) from exc
            if exc.errno == errno.EMFILE:
                raise WatcherError(
                    "the inotify instance limit is reached; raise fs.inotify.max_user_instances "
                    "or use polling (LABELSYNC_POLLING=true)"
                ) from exc
            raise WatcherError(f"cannot watch {self.root}: {exc}") from exc

    def stop(self, timeout_s: float = 5.0) -> None:
        logging.getLogger(_WATCHDOG_LOGGER).removeHandler(self._overflow_hook)
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout_s)

    @property
    def watching_root(self) -> bool:
        """False once the directory at the root's path is not the one being watched
        (removed, or swapped for another by a rename): time to watch again."""
        return self._root_inode is not None and _inode(self.root) == self._root_inode

    @property
    def alive(self) -> bool:
        """False once the observer died (e.g. the directory was removed): time to rescan."""
        # The observer thread outlives its emitter: when the watched directory
        # is deleted, the emitter stops and the observer just idles.
        emitters = self._observer.emitters
        return (
            self._observer.is_alive()
            and bool(emitters)
            and all(emitter.is_alive() for emitter in emitters)
        )

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wants(self, path: Path) -> bool:
        """Is ``path`` a conversation file by name? (Also useful to the directory scan.)"""
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            return False
        return wanted(relative, self.patterns, recursive=self.recursive)

    def _hint(self, raw_path: bytes | str) -> None:
        path = Path(os.fsdecode(raw_path))
        if not self.wants(path):
            return
        try:
            self._on_hint(path)
        except Exception:
            # An exception here would kill watchdog's thread and every later hint.
            log.exception("hint handler failed for %s", path)


class _OverflowHook(logging.Handler):
    def __init__(self, flag: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self._flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        if _OVERFLOW_TEXT in record.getMessage():
            self._flag.set()


def _inode(path: Path) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino if stat_module.S_ISDIR(st.st_mode) else None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            # An atomic save is "write temp, rename over": the destination is
            # the real file. The source is gone, which is a hint of its own.
            self._watcher._hint(event.dest_path)
        self._watcher._hint(event.src_path)
