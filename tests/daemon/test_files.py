"""The filesystem edge: which files are conversations, and reading them whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelsync.files import TooLarge, Unsettled, read_stable, scan


def names(root: Path, **kwargs: object) -> set[str]:
    return {str(path.relative_to(root)) for path, _ in scan(root, **kwargs)}  # type: ignore[arg-type]


def test_scan_finds_conversations_and_skips_temp_files(tmp_path: Path):
    for name in ("a.json", "b.json", ".hidden.json", "c.json~", "d.json.tmp", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.json").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "f.json").write_text("{}")
    assert names(tmp_path) == {"a.json", "b.json"}
    assert names(tmp_path, recursive=True) == {"a.json", "b.json", "sub/e.json"}
    assert names(tmp_path, pattern="*.txt") == {"notes.txt"}


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
