"""The filesystem edge: which entries are conversation files, and reading them safely.

A watch directory holds whatever people and programs leave there. Whatever an
entry is, it can only cost itself:
- only regular files are opened, and never in a way that blocks (a FIFO named
  `x.json` is skipped, not read);
- a symlink is followed only to a file inside the watch directory, unless
  following them out of it is allowed (LABELSYNC_FOLLOW_SYMLINKS);
- a file that cannot be read (permissions), a name that is not UTF-8, a
  symlink loop: each is reported with a reason, and the rest goes on;
- a file is accepted only if it did not change while it was read.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat as stat_module
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

# Editors' and downloaders' temporary files: never a finished conversation.
# Dotfiles (".#x" Emacs locks, ".x.swp" Vim swap, atomic writers' ".x.tmp") are
# ignored by the dot rule.
_TEMP_SUFFIXES = ("~", ".tmp", ".temp", ".part", ".swp", ".swx", ".crdownload")
_TEMP_NAMES = frozenset({"4913"})  # Vim probes a directory's writability with it

# Files read as JSON Lines (one JSON value a line, tailed as they grow).
LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")


@dataclass(frozen=True)
class FileStat:
    """What says "this file changed" without reading it (mtime alone can tie)."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Found:
    """A directory entry whose name says "conversation file": a file to read, or why not."""

    path: Path
    stat: FileStat | None
    problem: str | None = None  # set: skipped without being opened (a FIFO, a symlink out, ...)


@dataclass(frozen=True)
class FileRead:
    path: Path
    stat: FileStat
    raw: bytes
    sha256: str


class Unsettled(Exception):
    """The file changed while it was read, or vanished: wait for it, it is not bad."""


class Unreadable(Exception):
    """The file can not be read (permissions, I/O error, not a regular file); `reason` says why."""

    def __init__(self, reason: str, stat: FileStat | None = None, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stat = stat
        self.retry = retry  # worth trying again on every scan (e.g. permissions fixed)


class TooLarge(Exception):
    def __init__(self, stat: FileStat, limit: int) -> None:
        super().__init__(
            f"{stat.size} bytes is over the limit of {limit} (LABELSYNC_MAX_FILE_BYTES)"
        )
        self.stat = stat


def is_lines(path: PurePath) -> bool:
    """JSON Lines are read line by line and tailed; anything else is one JSON document."""
    return path.name.lower().endswith(LINE_SUFFIXES)


def wanted(relative: PurePath, patterns: tuple[str, ...], *, recursive: bool) -> bool:
    """Whether a path relative to the watch root names a conversation file.

    The one rule for both the directory scan and the watcher's hints.
    """
    if not relative.parts or (len(relative.parts) > 1 and not recursive):
        return False
    # Hidden directories too (.git, .chainlit): nothing in them is a conversation.
    if any(part.startswith(".") for part in relative.parts):
        return False
    name = relative.name
    if name in _TEMP_NAMES or name.endswith(_TEMP_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def scan(
    root: Path,
    patterns: tuple[str, ...] = ("*.json", "*.jsonl"),
    recursive: bool = False,
    follow_symlinks_out: bool = False,
) -> Iterator[Found]:
    """Every entry under root whose name says "conversation", with its stat, reading none."""
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # gone, or not readable: the watcher and the next scan see to it
        relative_dir = PurePath(os.path.relpath(directory, root)) if directory != root else None
        for entry in entries:
            relative = relative_dir / entry.name if relative_dir else PurePath(entry.name)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not entry.name.startswith("."):
                        stack.append(Path(entry.path))
                    elif wanted(relative, patterns, recursive=recursive):
                        # Named like a conversation: say why it is not read.
                        yield Found(Path(entry.path), None, "not a regular file (a directory)")
                    continue
            except OSError:
                continue
            if not wanted(relative, patterns, recursive=recursive):
                continue
            found = examine(Path(entry.path), real_root, follow_symlinks_out)
            if found is not None:
                yield found


def examine(path: Path, real_root: str, follow_symlinks_out: bool = False) -> Found | None:
    """Stat one entry without opening it; None if it vanished."""
    if _bad_name(path):
        return Found(path, None, "the file name is not valid UTF-8: rename the file")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Found(path, None, f"cannot be examined: {exc.strerror}")
    if stat_module.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        if not follow_symlinks_out and not _inside(target, real_root):
            return Found(
                path, None, "a symlink out of the watch directory (LABELSYNC_FOLLOW_SYMLINKS)"
            )
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Found(path, None, "a symlink loop")
            if exc.errno == errno.ENOENT:
                return Found(path, None, "a broken symlink")
            return Found(path, None, f"cannot be examined: {exc.strerror}")
    if not stat_module.S_ISREG(st.st_mode):
        return Found(path, None, f"not a regular file ({_kind(st.st_mode)})")
    return Found(path, FileStat.of(st))


def open_regular(path: Path) -> tuple[int, FileStat]:
    """Open for reading without ever blocking, and only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unsettled("vanished") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unreadable("a symlink loop", retry=False) from None
        raise Unreadable(f"cannot be read: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat_module.S_ISREG(st.st_mode):
        os.close(fd)
        raise Unreadable(f"not a regular file ({_kind(st.st_mode)})", retry=False)
    return fd, FileStat.of(st)


def read_stable(path: Path, max_bytes: int) -> FileRead:
    """Read a file whole, and only accept it if it did not change under us."""
    fd, before = open_regular(path)
    try:
        if before.size > max_bytes:
            raise TooLarge(before, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(max_bytes + 1)
        after = FileStat.of(os.stat(path))
    except FileNotFoundError:
        raise Unsettled("vanished") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read: {exc.strerror}", before) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise Unsettled("grew while being read")
    if before != after or len(raw) != after.size:
        raise Unsettled("changed while being read")
    return FileRead(path, after, raw, hashlib.sha256(raw).hexdigest())


def _inside(target: str, real_root: str) -> bool:
    return target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)


def _bad_name(path: Path) -> bool:
    try:
        os.fsencode(path.name).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _kind(mode: int) -> str:
    if stat_module.S_ISFIFO(mode):
        return "a FIFO"
    if stat_module.S_ISSOCK(mode):
        return "a socket"
    if stat_module.S_ISDIR(mode):
        return "a directory"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "a device"
    return "not a file"


def display(path: Path | str) -> str:
    """A path as text that can be stored and printed: undecodable bytes escaped."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
