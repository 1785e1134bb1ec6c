"""SIGTERM and SIGINT stop labelsync promptly, whatever the server does, and never deadlock.

Times are printed, not asserted: each test's limit is a hang detector far
below what the server would take (a trickled answer of hours), so a stop that
is honoured passes on a slow machine and a stop that is ignored fails.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.daemon.conftest import LABELSYNC
from tests.support.corpus import write_corpus
from tests.support.fakeserver import Answer, FakeServer, Request

HANG_S = 60  # far longer than any honoured stop; far shorter than the trickled answers


def trickled(request: Request) -> Answer:
    """A whole answer at one byte a second: ~1.5 h for this one."""
    body = json.dumps({"id": 1, "title": "slow", "padding": " " * 5000}).encode()
    return Answer(200, body, trickle_s=1.0)


def fake_env(tmp_path: Path, url: str) -> dict[str, str]:
    import os

    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))
    }
    (tmp_path / "conversations").mkdir(exist_ok=True)
    return {
        **base,
        "LABEL_STUDIO_URL": url,
        "LABEL_STUDIO_API_KEY": "0123456789abcdef0123456789abcdef01234567",
        "LABEL_STUDIO_PROJECT_ID": "1",
        "LABELSYNC_STATE_DIR": str(tmp_path / "state"),
        "LABELSYNC_WATCH_DIR": str(tmp_path / "conversations"),
        # Long deadlines: only the signal can end these runs early.
        "LABELSYNC_TIMEOUT_SECONDS": "3600",
        "LABELSYNC_IMPORT_TIMEOUT_SECONDS": "3600",
    }


@pytest.mark.parametrize("command", [["backfill"], ["run"]])
def test_sigterm_stops_a_run_waiting_on_a_trickling_server(tmp_path: Path, command: list[str]):
    write_corpus(tmp_path / "conversations", 3)
    with FakeServer(trickled) as fake:
        process = subprocess.Popen(
            [*LABELSYNC, *command],
            env=fake_env(tmp_path, fake.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + HANG_S
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.requests, "labelsync never asked the server"
        time.sleep(1.0)  # well inside the trickled answer
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("SIGTERM was ignored while the server trickled") from None
        print(f"\n{command[0]}: stopped {time.monotonic() - sent:.2f} s after SIGTERM")
    assert "Traceback" not in stderr
    if command == ["backfill"]:
        # Not finished: exit 2 and one line saying the next run goes on.
        assert process.returncode == 2, stderr
        assert "next run picks up" in stderr.strip().splitlines()[-1]
    else:  # a stop of the daemon is a clean exit, even while it starts up
        assert process.returncode == 0, stderr


# A child that, round after round, installs labelsync's signal handling, keeps
# its main thread busy inside `stop.wait()` (holding the event's lock at random
# instants: where a handler that sets the event deadlocks) and reports each stop.
_CHILD = textwrap.dedent(
    """
    import sys, threading
    from labelsync.cli import _stop_on_signals

    for round_ in range(int(sys.argv[1])):
        stop = threading.Event()
        with _stop_on_signals(stop):
            print("ready", round_, flush=True)
            while not stop.wait(0.0001):
                pass
        print("stopped", round_, flush=True)
    """
)


def test_sigint_and_sigterm_within_a_millisecond_never_deadlock_the_stop():
    rounds = 300
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(rounds)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = Lines(child.stdout), Lines(child.stderr)
    stopped = 0
    started = time.monotonic()
    try:
        for round_ in range(rounds):
            assert out.wait_for(f"ready {round_}\n", HANG_S), err.text()
            child.send_signal(signal.SIGINT)
            child.send_signal(signal.SIGTERM)
            assert out.wait_for(f"stopped {round_}\n", HANG_S), (
                f"round {round_}: the stop deadlocked"
            )
            stopped += 1
    finally:
        child.kill()
        child.wait()
    assert stopped == rounds
    assert "Traceback" not in err.text(), err.text()
    elapsed = time.monotonic() - started
    print(f"\n{rounds} SIGINT+SIGTERM pairs, {stopped} clean stops in {elapsed:.1f} s")


def test_the_cli_stops_cleanly_on_a_sigint_sigterm_pair(env, ls_project):
    """The real daemon against the real Label Studio, a few times over."""
    write_corpus(Path(env["LABELSYNC_WATCH_DIR"]), 3)
    for attempt in range(5):
        process = subprocess.Popen(
            [*LABELSYNC, "run"],
            env={**env, "LABELSYNC_QUIET_SECONDS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        err = Lines(process.stderr)
        assert err.wait_for("watching", HANG_S), f"attempt {attempt}: {err.text()}"
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"attempt {attempt}: the stop deadlocked") from None
        err.close()
        assert process.returncode == 0, err.text()
        assert "Traceback" not in err.text()
        assert "stopped" in err.text()


class Lines:
    """A pipe read line by line on a thread, so a test can wait for a line with a limit."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: any(text in line for line in self._lines), timeout_s
            )

    def close(self) -> None:
        self._thread.join(HANG_S)

    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)
