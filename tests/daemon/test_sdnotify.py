"""The notify messages, received through a real AF_UNIX datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelsync.sdnotify import Notifier


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET, as systemd would hold it."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket
        sock.settimeout(10)  # generous: only bounds a failing test, never asserted

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        name = f"labelsync-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        address = "@" + name
    with sock:
        yield FakeSystemd(sock, address)


def test_messages_reach_systemd(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": systemd.notify_socket})

    assert notifier.ready(status="watching /srv/conversations")
    assert systemd.receive() == ["READY=1", "STATUS=watching /srv/conversations"]
    assert notifier.status("backlog 3, sent 120")
    assert systemd.receive() == ["STATUS=backlog 3, sent 120"]
    assert notifier.watchdog()
    assert systemd.receive() == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert systemd.receive() == ["STOPPING=1"]


def test_a_newline_in_a_status_cannot_inject_an_assignment(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": systemd.notify_socket})

    notifier.status("quarantined evil\nREADY=1.json")

    assert systemd.receive() == ["STATUS=quarantined evil READY=1.json"]


def test_outside_systemd_everything_is_a_silent_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({})

    with caplog.at_level(logging.DEBUG):
        results = [notifier.ready(), notifier.status("x"), notifier.watchdog(), notifier.stopping()]

    assert results == [False, False, False, False]
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert caplog.records == []


def test_a_dead_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})

    with caplog.at_level(logging.WARNING):
        results = [notifier.watchdog() for _ in range(5)]

    assert results == [False] * 5
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens" in warnings[0].getMessage()


def test_an_unsupported_address_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})

    with caplog.at_level(logging.WARNING):
        assert not notifier.ready()

    assert "unsupported" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        # The watchdog belongs to another process (e.g. a wrapper): not ours to ping.
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    environ: dict[str, str], expected_s: float | None
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/run/systemd/notify", **environ})

    assert notifier.watchdog_interval_s == expected_s


def test_a_reader_that_stopped_reading_never_blocks_the_daemon(systemd: FakeSystemd) -> None:
    """A full datagram queue drops messages instead of hanging the work loop."""
    import threading

    notifier = Notifier(systemd.notify_socket)
    done = threading.Event()

    def flood() -> None:
        for i in range(5000):  # far more than an unread socket queues
            notifier.status(f"backlog {i}")
        done.set()

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    assert done.wait(60), "sending to a full notify socket blocked"


def test_the_watchdog_is_pinged_at_most_every_half_interval(systemd: FakeSystemd) -> None:
    from labelsync.sdnotify import WatchdogPacer

    now = [0.0]
    pacer = WatchdogPacer(Notifier(systemd.notify_socket, watchdog_usec=4_000_000), lambda: now[0])
    for step in range(41):  # 0.0 .. 4.0 s in 0.1 s steps; interval 2 s -> a ping a second
        now[0] = step / 10
        pacer()
    pings = []
    systemd.sock.settimeout(0.5)
    try:
        while True:
            pings.append(systemd.sock.recv(64))
    except TimeoutError:
        pass
    assert pings == [b"WATCHDOG=1"] * 5  # at 0, 1, 2, 3, 4 s
    WatchdogPacer(Notifier(systemd.notify_socket))()  # no WATCHDOG_USEC: nothing sent
    with pytest.raises(TimeoutError):
        systemd.sock.recv(64)
