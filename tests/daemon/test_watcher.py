"""The watcher with real files and real observers (inotify and polling).

Never timing-based: each test waits (generously) for the hint it expects. To
show that something is NOT hinted, it writes a wanted "sentinel" file after the
unwanted ones and waits for that: inotify delivers events in order, so by then
any hint for the earlier writes would already have arrived.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path, PurePath

import pytest

from labelsync.watcher import Watcher, WatcherError, wanted

PATIENCE_S = 30.0  # only bounds a failing test; never asserted


class Hints:
    def __init__(self) -> None:
        self.queue: queue.Queue[Path] = queue.Queue()
        self.seen: list[Path] = []

    def wait_for(self, path: Path) -> list[Path]:
        """Block until ``path`` is hinted; return every hint seen so far."""
        while path not in self.seen:
            try:
                self.seen.append(self.queue.get(timeout=PATIENCE_S))
            except queue.Empty:
                pytest.fail(f"no hint for {path.name}; got {[p.name for p in self.seen]}")
        return self.seen


@pytest.fixture(params=["inotify", "polling"])
def observer_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def watch(
    root: Path, kind: str = "inotify", *, pattern: str = "*.json", recursive: bool = False
) -> tuple[Watcher, Hints]:
    hints = Hints()
    watcher = Watcher(
        root,
        hints.queue.put,
        patterns=(pattern,),
        recursive=recursive,
        polling=kind == "polling",
        polling_interval_s=0.1,
    )
    return watcher, hints


@pytest.fixture
def started(tmp_path: Path, observer_kind: str) -> Iterator[Hints]:
    watcher, hints = watch(tmp_path, observer_kind)
    with watcher:
        yield hints


def test_a_new_file_is_hinted(tmp_path: Path, started: Hints) -> None:
    (tmp_path / "conv-1.json").write_text('{"messages": []}')

    started.wait_for(tmp_path / "conv-1.json")


def test_an_atomic_save_hints_the_real_file_not_the_temp(tmp_path: Path, started: Hints) -> None:
    temp = tmp_path / ".conv-1.json.x7f3a"  # how mkstemp(dir=..., prefix=".") names it
    temp.write_text('{"messages": [1]}')
    os.replace(temp, tmp_path / "conv-1.json")

    seen = started.wait_for(tmp_path / "conv-1.json")

    assert temp not in seen


def test_an_in_place_rewrite_is_hinted(tmp_path: Path, observer_kind: str) -> None:
    conversation = tmp_path / "conv-1.json"
    conversation.write_text('{"messages": [1]}')
    watcher, hints = watch(tmp_path, observer_kind)
    with watcher, conversation.open("r+") as f:
        # A different length, so a snapshot sees it even inside one mtime tick.
        f.seek(0)
        f.write('{"messages": [1, 2, 3]}')
        f.flush()
        hints.wait_for(conversation)


def test_truncate_then_write_is_hinted(tmp_path: Path, observer_kind: str) -> None:
    conversation = tmp_path / "conv-1.json"
    conversation.write_text('{"messages": [1]}')
    watcher, hints = watch(tmp_path, observer_kind)
    with watcher:
        with conversation.open("w") as f:  # O_TRUNC: readers may see it empty
            f.write('{"messages": [1, 2]}')
        hints.wait_for(conversation)


def test_a_rename_hints_both_the_old_and_the_new_name(tmp_path: Path, observer_kind: str) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text('{"messages": [1]}')
    watcher, hints = watch(tmp_path, observer_kind)
    with watcher:
        old.rename(new)
        hints.wait_for(new)
        hints.wait_for(old)  # it is gone: the consumer forgets it


def test_a_deletion_is_hinted(tmp_path: Path, observer_kind: str) -> None:
    conversation = tmp_path / "conv-1.json"
    conversation.write_text('{"messages": [1]}')
    watcher, hints = watch(tmp_path, observer_kind)
    with watcher:
        conversation.unlink()
        hints.wait_for(conversation)


def test_dotfiles_and_temp_files_are_ignored(tmp_path: Path) -> None:
    # pattern "*" so that only the dotfile and temp-file rules can keep them out
    watcher, hints = watch(tmp_path, pattern="*")
    with watcher:
        for name in [".hidden", ".#conv.json", "conv.json~", ".conv.json.swp", "conv.tmp"]:
            (tmp_path / name).write_text("{}")
        for name in ["conv.json.part", "4913"]:
            (tmp_path / name).write_text("{}")
        (tmp_path / "sentinel.json").write_text("{}")
        seen = hints.wait_for(tmp_path / "sentinel.json")

    assert set(seen) == {tmp_path / "sentinel.json"}


def test_reading_a_file_is_not_a_hint(tmp_path: Path) -> None:
    conversation = tmp_path / "conv-1.json"
    conversation.write_text('{"messages": [1]}')
    watcher, hints = watch(tmp_path)
    with watcher:
        conversation.read_text()  # the daemon itself reading: must not loop
        (tmp_path / "sentinel.json").write_text("{}")
        seen = hints.wait_for(tmp_path / "sentinel.json")

    assert conversation not in seen


def test_subdirectories_only_when_recursive(tmp_path: Path, observer_kind: str) -> None:
    (tmp_path / "team-a").mkdir()
    nested = tmp_path / "team-a" / "conv-1.json"
    flat_watcher, flat = watch(tmp_path)
    deep_watcher, deep = watch(tmp_path, observer_kind, recursive=True)
    with flat_watcher, deep_watcher:
        nested.write_text("{}")
        deep.wait_for(nested)
        (tmp_path / "sentinel.json").write_text("{}")
        assert nested not in flat.wait_for(tmp_path / "sentinel.json")


def test_a_failing_consumer_does_not_stop_the_watch(tmp_path: Path) -> None:
    hints: queue.Queue[Path] = queue.Queue()

    def flaky(path: Path) -> None:
        if path.name == "first.json":
            raise RuntimeError("consumer bug")
        hints.put(path)

    with Watcher(tmp_path, flaky):
        (tmp_path / "first.json").write_text("{}")
        (tmp_path / "second.json").write_text("{}")
        assert hints.get(timeout=PATIENCE_S) == tmp_path / "second.json"


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    watcher, _ = watch(tmp_path / "nope")

    with pytest.raises(WatcherError, match="does not exist"):
        watcher.start()


def test_the_watcher_reports_when_its_directory_is_gone(tmp_path: Path, observer_kind: str) -> None:
    root = tmp_path / "conversations"
    root.mkdir()
    watcher, _ = watch(root, observer_kind)
    with watcher:
        assert watcher.alive
        root.rmdir()
        # Poll the flag the run loop would check, up to a generous bound.
        gone = threading.Event()
        for _ in range(int(PATIENCE_S / 0.05)):
            if not watcher.alive:
                gone.set()
                break
            gone.wait(0.05)
        assert gone.is_set(), "the watcher still claims to watch a deleted directory"


@pytest.mark.parametrize(
    ("relative", "recursive", "expected"),
    [
        ("conv.json", False, True),
        ("conv.JSON", False, False),  # patterns are case-sensitive, like the filesystem
        ("sub/conv.json", False, False),
        ("sub/conv.json", True, True),
        (".git/conv.json", True, False),
        (".chainlit/conv.json", True, False),
        ("conv.json.tmp", False, False),
        (".#conv.json", False, False),
        ("4913", False, False),
    ],
)
def test_which_names_are_conversations(relative: str, recursive: bool, expected: bool) -> None:
    assert wanted(PurePath(relative), ("*.json",), recursive=recursive) is expected
