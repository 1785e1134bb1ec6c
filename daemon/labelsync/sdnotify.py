"""The systemd notify protocol, spoken to ``$NOTIFY_SOCKET`` directly.

Written after systemd's MIT-0 ``man/notify-selfcontained-example.py``: one
datagram of newline-separated ``KEY=value`` assignments per message. We do not
use the ``sdnotify`` package: it is unmaintained since 2017 and swallows every
error, so a broken socket would go unnoticed until the watchdog kills us.

The environment is read once, at the edge (``Notifier.from_environ``); outside
systemd every method is a silent no-op, so the run loop calls them
unconditionally. A send never raises: losing a STATUS line must not stop a
sync. The first failure is logged as a warning, later ones only at debug level,
so a dead socket does not flood the journal every watchdog period.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd, or nothing outside it."""

    def __init__(self, socket_address: str | None, watchdog_usec: int | None = None) -> None:
        # Kept as given (with the leading '@' for abstract sockets) for messages.
        self._address = socket_address or None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._failed_before = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """Build from the service's environment (pass ``os.environ`` at the edge).

        ``WATCHDOG_PID`` names the process the watchdog expects pings from; when
        it is another process (e.g. we were started by a wrapper), pinging
        would be ignored by systemd, so the interval is treated as unset.
        """
        watchdog_usec = _parse_positive_int(environ.get("WATCHDOG_USEC"))
        watchdog_pid = _parse_positive_int(environ.get("WATCHDOG_PID"))
        if watchdog_pid is not None and watchdog_pid != (os.getpid() if pid is None else pid):
            watchdog_usec = None
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is done (Type=notify waits for this)."""
        return self._send("READY=1", *_status_lines(status))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self._send(*_status_lines(text))

    def watchdog(self) -> bool:
        """Ping the watchdog; call it from the loop that does the work."""
        return self._send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd a clean stop is under way (so a slow stop is not a hang)."""
        return self._send("STOPPING=1", *_status_lines(status))

    def _send(self, *assignments: str) -> bool:
        """Send one datagram; True when it was delivered, False when skipped or failed."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8")
        try:
            target = _socket_target(self._address)
            # A fresh socket per message, as in systemd's example: no state to go
            # stale if systemd re-creates its socket, and safe from any thread.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the work loop: a reader that stopped reading (a full
                # queue) costs a dropped datagram, not a hung daemon.
                sock.setblocking(False)
                sock.connect(target)
                sock.sendall(message)
        except (OSError, ValueError) as exc:
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            log.log(level, "systemd notify to %s failed: %s", self._address, exc)
            return False
        return True


class WatchdogPacer:
    """WATCHDOG=1 at most every half interval, whichever step of the work calls it.

    The run loop and the engine (between import batches, during retries) both
    call it; pinging on every call would flood the socket for nothing.
    """

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._clock = clock
        self._next = 0.0

    def __call__(self) -> None:
        interval = self._notifier.watchdog_interval_s
        if interval is None:
            return
        now = self._clock()
        if now >= self._next:
            self._notifier.watchdog()
            self._next = now + interval / 2


def _socket_target(address: str) -> str | bytes:
    if address.startswith("@"):
        # Linux abstract namespace: systemd spells the leading NUL byte as '@'.
        return b"\0" + address[1:].encode("utf-8")
    if address.startswith("/"):
        return address
    # systemd >= 254 may also hand out vsock:... addresses (VMs); not for us.
    raise ValueError(f"unsupported NOTIFY_SOCKET address {address!r}")


def _status_lines(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # A newline would start a new assignment (e.g. a file name "x\nREADY=1").
    return ("STATUS=" + " ".join(text.splitlines()),)


def _parse_positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None
