"""Atomic conversation files: a reader (the daemon) never sees a half-written one.

temp file in the same directory -> write -> fsync -> rename over the target ->
fsync the directory, so the rename itself survives a crash. The daemon's
watcher sees the rename as a moved event onto the real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
FILE_PREFIX = "conversation_"


class UnsafeThreadId(ValueError):
    """A thread id that cannot be used as part of a file name."""


def conversation_path(watch_dir: Path, thread_id: str) -> Path:
    if not _SAFE_ID.match(thread_id) or ".." in thread_id:
        raise UnsafeThreadId(f"thread id {thread_id!r} cannot name a file")
    return watch_dir / f"{FILE_PREFIX}{thread_id}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    # A dot-prefixed ".tmp" name: the daemon's scan can skip it by name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(body)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; the daemon may run as another user
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_conversation(watch_dir: Path, data: dict[str, Any]) -> Path:
    """Write one conversation (already in the contract's shape); return its path."""
    path = conversation_path(watch_dir, str(data["thread_id"]))
    write_json_atomic(path, data)
    return path


def read_conversation(watch_dir: Path, thread_id: str) -> dict[str, Any] | None:
    path = conversation_path(watch_dir, thread_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
