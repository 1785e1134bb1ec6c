"""A loopback HTTP proxy in front of the real Label Studio that fails on demand.

A real server will not, on demand, answer 503, time out after committing an
import, drop the answer to a request it processed, hold a request before it
reaches Label Studio, or refuse a body over a reverse proxy's limit. Those are
exactly the cases exactly-once must survive, so this proxy produces them while
every request that does go through reaches the real Label Studio.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    """What to do to the next request matching method and path prefix.

    action:
      "status"           answer `status` without forwarding (nothing happens upstream);
      "forward_then_status"  forward (Label Studio processes it), then answer `status`:
                         the client can not know the import happened;
      "forward_then_hang"    forward, then hold the answer `hang_s` (a client timeout);
      "hold_then_forward"    hold the request `hang_s`, then forward it whether or not
                         the client still waits (a queue in front of Label Studio):
                         Label Studio processes it late;
      "status_then_forward"  answer `status` at once (a gateway's 504), then forward
                         the request `hang_s` later: Label Studio processes it
                         after the client was told it failed.
    """

    method: str
    path: str
    action: str
    status: int = 503
    retry_after: str | None = None
    hang_s: float = 5.0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status answered)
        # Label Studio's own validation, for data it would accept: a batch holding a
        # task of one of these conversations is rejected whole with a 400.
        self.reject_thread_ids: set[str] = set()
        # Set once a faulted request has reached Label Studio and been processed.
        self.forwarded = threading.Event()
        # Like nginx's client_max_body_size: a bigger body is answered 413 and
        # never forwarded. None: no limit.
        self.max_body_bytes: int | None = None
        self.refused_sizes: list[int] = []  # Content-Length of each body refused with 413
        # Error bodies made here (400 and "status" faults) quote the request's
        # Authorization header, as some debugging proxies do.
        self.echo_authorization = False
        self.authorizations: set[str] = set()  # every Authorization header value seen
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                if self.headers.get("Authorization"):
                    proxy.authorizations.add(self.headers["Authorization"])
                length = int(self.headers.get("Content-Length") or 0)
                if proxy.max_body_bytes is not None and length > proxy.max_body_bytes:
                    return self._too_large(length)
                body = self.rfile.read(length) if length else None
                if proxy._rejects(body):
                    reason = "injected: bad task" + proxy._echo(self.headers)
                    payload = json.dumps({"validation_errors": {"data": [reason]}}).encode()
                    return self._answer(400, payload, None)
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.action == "status":
                    payload = json.dumps({"detail": "injected fault" + proxy._echo(self.headers)})
                    return self._answer(fault.status, payload.encode(), fault)
                if fault is not None and fault.action == "status_then_forward":
                    late = threading.Timer(
                        fault.hang_s,
                        proxy._forward_late,
                        (self.command, self.path, dict(self.headers.items()), body),
                    )
                    late.daemon = True
                    late.start()
                    return self._answer(fault.status, b'{"detail": "gateway timeout"}', fault)
                if fault is not None and fault.action == "hold_then_forward":
                    time.sleep(fault.hang_s)
                status, headers, payload = proxy._forward(
                    self.command, self.path, self.headers, body
                )
                if fault is None:
                    return self._answer(status, payload, None, headers)
                proxy.forwarded.set()
                if fault.action == "hold_then_forward":
                    return self._answer(status, payload, None, headers)
                if fault.action == "forward_then_hang":
                    time.sleep(fault.hang_s)
                    return self._answer(status, payload, None, headers)
                return self._answer(
                    fault.status, b'{"detail": "injected fault after forwarding"}', fault
                )

            def _answer(
                self,
                status: int,
                payload: bytes,
                fault: Fault | None,
                headers: list[tuple[str, str]] | None = None,
            ) -> None:
                proxy.seen.append((self.command, self.path, status))
                try:
                    self.send_response(status)
                    for key, value in headers or [("Content-Type", "application/json")]:
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                    if fault is not None and fault.retry_after is not None:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): that is the point

            def _too_large(self, length: int) -> None:
                """As nginx does: answer at once from the headers, then read and drop
                the body so the client, still sending it, gets to read the answer."""
                proxy.refused_sizes.append(length)
                proxy.seen.append((self.command, self.path, 413))
                page = (
                    b"<html><head><title>413 Request Entity Too Large</title></head><body>"
                    b"<center><h1>413 Request Entity Too Large</h1></center></body></html>"
                )
                try:
                    self.send_response(413)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(page)
                    self.wfile.flush()
                    left = length
                    while left > 0 and (chunk := self.rfile.read(min(left, 1 << 16))):
                        left -= len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _echo(self, headers: object) -> str:
        if not self.echo_authorization:
            return ""
        sent = headers.get("Authorization", "")  # type: ignore[attr-defined]
        return f" (request had Authorization: {sent})"

    def _rejects(self, body: bytes | None) -> bool:
        if not body or not self.reject_thread_ids:
            return False
        try:
            items = json.loads(body)
        except ValueError:
            return False
        return isinstance(items, list) and any(
            isinstance(i, dict) and i.get("data", {}).get("thread_id") in self.reject_thread_ids
            for i in items
        )

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and path.startswith(fault.path):
                    self._faults.remove(fault)
                    return fault
        return None

    def _forward_late(self, method: str, path: str, headers: object, body: bytes | None) -> None:
        self._forward(method, path, headers, body)
        self.forwarded.set()

    def _forward(self, method: str, path: str, headers: object, body: bytes | None):
        connection = http.client.HTTPConnection(*self._upstream, timeout=120)
        try:
            forwarded = {
                k: v
                for k, v in headers.items()  # type: ignore[attr-defined]
                if k.lower() not in ("host", "connection")
            }
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
