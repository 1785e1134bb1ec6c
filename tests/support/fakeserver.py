"""A loopback HTTP server that misbehaves in ways no proxy in front of Label Studio can.

A real Label Studio never answers with a login page, a JSON list, a redirect
or an answer trickled one byte a second; a wrong URL, a single sign-on proxy
or a broken network does. Each test says what to answer, per request, with a
function; the server records what it was asked.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    # Seconds between two bytes of the whole answer (status line and headers
    # included): a per-read timeout never fires, only a deadline for the exchange.
    trickle_s: float | None = None


def json_answer(value: object, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode())


def login_page() -> Answer:
    """What a wrong URL often reaches: an HTML sign-in page, with 200."""
    page = (
        b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form></form></body></html>"
    )
    return Answer(200, page, {"Content-Type": "text/html; charset=utf-8"})


def redirect_to_login(location: str = "/user/login/?next=/api/") -> Answer:
    return Answer(302, b"", {"Location": location, "Content-Length": "0"})


def html_error(status: int = 502) -> Answer:
    page = f"<html><body><h1>{status} Bad Gateway</h1><hr>nginx</body></html>".encode()
    return Answer(status, page, {"Content-Type": "text/html"})


def echo_authorization(status: int) -> Callable[[Request], Answer]:
    """A server that puts the request's Authorization header in its error body,
    as some debugging proxies and frameworks do."""

    def answer(request: Request) -> Answer:
        sent = request.headers.get("Authorization", "")
        detail = {"detail": f"rejected request with Authorization: {sent}", "headers": sent}
        return Answer(status, json.dumps(detail).encode())

    return answer


class FakeServer:
    def __init__(self, respond: Callable[[Request], Answer]) -> None:
        self.respond = respond
        self.requests: list[Request] = []
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    self.rfile.read(length) if length else b"",
                )
                server.requests.append(request)
                answer = server.respond(request)
                # The client may give up mid-answer: that is what the tests want to see.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._write(self, answer)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _write(self, handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        head = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}\r\n"]
        headers = dict(answer.headers)
        headers.setdefault("Content-Length", str(len(answer.body)))
        head += [f"{key}: {value}\r\n" for key, value in headers.items()]
        raw = "".join(head).encode() + b"\r\n" + answer.body
        if answer.trickle_s is None:
            handler.wfile.write(raw)
            return
        for index in range(len(raw)):
            if self._closing.wait(answer.trickle_s):
                return
            handler.wfile.write(raw[index : index + 1])
            handler.wfile.flush()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll until condition() holds; False if it never did (a hang detector, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
