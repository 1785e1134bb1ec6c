"""The filesystem edge: which entries are conversations, and reading them safely."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from labelsync.files import TooLarge, Unreadable, Unsettled, read_stable, scan


def names(root: Path, **kwargs: object) -> set[str]:
    return {
        str(found.path.relative_to(root))
        for found in scan(root, **kwargs)  # type: ignore[arg-type]
        if found.problem is None
    }


def problems(root: Path, **kwargs: object) -> dict[str, str]:
    return {
        os.fsdecode(found.path.name): found.problem
        for found in scan(root, **kwargs)  # type: ignore[arg-type]
        if found.problem is not None
    }


def test_scan_finds_conversations_and_skips_temp_files(tmp_path: Path):
    for name in ("a.json", "b.json", ".hidden.json", "c.json~", "d.json.tmp", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.json").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "f.json").write_text("{}")
    assert names(tmp_path) == {"a.json", "b.json"}
    assert names(tmp_path, recursive=True) == {"a.json", "b.json", "sub/e.json"}
    assert names(tmp_path, patterns=("*.txt",)) == {"notes.txt"}
    (tmp_path / "log.jsonl").write_text("{}\n")
    assert names(tmp_path, patterns=("*.json", "*.jsonl")) == {"a.json", "b.json", "log.jsonl"}


def test_special_entries_are_skipped_with_a_reason_and_never_opened(tmp_path: Path):
    root = tmp_path / "watch"
    root.mkdir()
    (root / "good.json").write_text("{}")
    os.mkfifo(root / "fifo.json")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "socket.json"))
    (root / "dir.json").mkdir()
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    (root / "out.json").symlink_to(outside)
    (root / "in.json").symlink_to(root / "good.json")
    (root / "loop.json").symlink_to(root / "loop.json")
    (root / "broken.json").symlink_to(root / "nowhere.json")
    (root / "to-dir.json").symlink_to(root / "dir.json")
    (root / os.fsdecode(b"bad-\xff.json")).write_text("{}")

    # A scan must not block on the FIFO (nobody ever writes to it).
    result: dict[str, dict[str, str]] = {}
    scanner = threading.Thread(target=lambda: result.update(p=problems(root)))
    scanner.start()
    scanner.join(10)
    assert not scanner.is_alive(), "the scan blocked"
    found = result["p"]
    assert found["fifo.json"] == "not a regular file (a FIFO)"
    assert found["socket.json"] == "not a regular file (a socket)"
    assert "symlink out of the watch directory" in found["out.json"]
    assert found["loop.json"] == "a symlink loop"
    assert found["broken.json"] == "a broken symlink"
    assert found["to-dir.json"] == "not a regular file (a directory)"
    assert "not valid UTF-8" in found[os.fsdecode(b"bad-\xff.json")]
    assert names(root) == {"good.json", "in.json"}
    # Allowed out: the symlink out of the directory is a file like any other.
    assert "out.json" in names(root, follow_symlinks_out=True)
    server.close()


def test_a_file_that_cannot_be_read_is_unreadable_not_fatal(tmp_path: Path):
    """The service user lacks read access (a bot's umask without g+r)."""
    directory = Path(tempfile.mkdtemp(prefix="labelsync-perm-"))
    directory.chmod(0o755)
    path = directory / "private.json"
    path.write_text("{}")
    path.chmod(0o600)
    try:
        outcome = as_unprivileged_user(lambda: read_stable(path, 1024))
    finally:
        shutil.rmtree(directory)
    assert outcome.startswith("Unreadable") and "Permission denied" in outcome


def as_unprivileged_user(action: Callable[[], object]) -> str:
    """Run action in a child that dropped to `nobody` (tests run as root here); returns
    the name and message of what it raised, or "ok"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            action()
            message = "ok"
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_a_fifo_is_refused_without_blocking(tmp_path: Path):
    path = tmp_path / "x.json"
    os.mkfifo(path)
    with pytest.raises(Unreadable, match="FIFO"):
        read_stable(path, 1024)


def test_a_missing_directory_scans_as_empty(tmp_path: Path):
    assert names(tmp_path / "not-there") == set()


def test_read_stable_returns_the_bytes_and_their_hash(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"messages": []}')
    read = read_stable(path, 1024)
    assert read.raw == b'{"messages": []}' and len(read.sha256) == 64
    assert read.stat.size == 16


def test_a_file_over_the_limit_is_refused_with_the_setting_named(tmp_path: Path):
    path = tmp_path / "big.json"
    path.write_bytes(b"x" * 2048)
    with pytest.raises(TooLarge, match="LABELSYNC_MAX_FILE_BYTES"):
        read_stable(path, 1024)


def test_a_file_that_vanished_is_unsettled_not_bad(tmp_path: Path):
    with pytest.raises(Unsettled):
        read_stable(tmp_path / "gone.json", 1024)
