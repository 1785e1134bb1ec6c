"""The filesystem edge: which files exist, and reading one without catching it mid-write."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

# Editors' and downloaders' temporary files: never a finished conversation.
# Dotfiles (".#x" Emacs locks, ".x.swp" Vim swap, atomic writers' ".x.tmp") are
# ignored by the dot rule.
_TEMP_SUFFIXES = ("~", ".tmp", ".temp", ".part", ".swp", ".swx", ".crdownload")
_TEMP_NAMES = frozenset({"4913"})  # Vim probes a directory's writability with it


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
class FileRead:
    path: Path
    stat: FileStat
    raw: bytes
    sha256: str


class Unsettled(Exception):
    """The file changed while it was read, or vanished: wait for it, it is not bad."""


class TooLarge(Exception):
    def __init__(self, stat: FileStat, limit: int) -> None:
        super().__init__(
            f"{stat.size} bytes is over the limit of {limit} (LABELSYNC_MAX_FILE_BYTES)"
        )
        self.stat = stat


def wanted(relative: PurePath, pattern: str, *, recursive: bool) -> bool:
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
    return fnmatch.fnmatchcase(name, pattern)


def scan(
    root: Path, pattern: str = "*.json", recursive: bool = False
) -> Iterator[tuple[Path, FileStat]]:
    """Every conversation file under root with its stat, without reading any."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        relative_dir = PurePath(os.path.relpath(directory, root)) if directory != root else None
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not entry.name.startswith("."):
                        stack.append(Path(entry.path))
                    continue
                relative = relative_dir / entry.name if relative_dir else PurePath(entry.name)
                if wanted(relative, pattern, recursive=recursive) and entry.is_file():
                    yield Path(entry.path), FileStat.of(entry.stat())
            except FileNotFoundError:
                continue  # deleted between listing and stat


def read_stable(path: Path, max_bytes: int) -> FileRead:
    """Read a file whole, and only accept it if it did not change under us."""
    try:
        with open(path, "rb") as handle:
            before = FileStat.of(os.fstat(handle.fileno()))
            if before.size > max_bytes:
                raise TooLarge(before, max_bytes)
            raw = handle.read(max_bytes + 1)
        after = FileStat.of(os.stat(path))
    except FileNotFoundError:
        raise Unsettled("vanished") from None
    if len(raw) > max_bytes:
        raise Unsettled("grew while being read")
    if before != after or len(raw) != after.size:
        raise Unsettled("changed while being read")
    return FileRead(path, after, raw, hashlib.sha256(raw).hexdigest())
