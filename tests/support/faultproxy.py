"""A loopback HTTP proxy in front of the real Label Studio that fails on demand.

A real server will not, on demand, answer 503, time out after committing an
import, or drop the answer to a request it processed. Those are exactly the
cases exactly-once must survive, so this proxy produces them while every
request that does go through reaches the real Label Studio.
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
      "forward_then_hang"    forward, then hold the answer `hang_s` (a client timeout).
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
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy._rejects(body):
                    return self._answer(
                        400, b'{"validation_errors": {"data": ["injected: bad task"]}}', None
                    )
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.action == "status":
                    return self._answer(fault.status, b'{"detail": "injected fault"}', fault)
                status, headers, payload = proxy._forward(
                    self.command, self.path, self.headers, body
                )
                if fault is None:
                    return self._answer(status, payload, None, headers)
                proxy.forwarded.set()
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

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

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
