"""A loopback stand-in for an Ollama server, speaking its real REST API.

No Ollama binary can be installed on the test machines, so tests point the real
`ollama` client (and the real chatbot) at this instead:

- GET  /             -> "Ollama is running"
- GET  /api/version  -> {"version": ...}
- GET  /api/tags     -> {"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}
- POST /api/chat     -> streaming NDJSON (chunked), one line per piece, the last with
                        "done": true; or one JSON object with "stream": false.
                        Unknown model: 404 {"error": "model \"x\" not found, try pulling it first"}.

Replies are deterministic: "You said: <last user message>" (or `reply_for`),
split into word pieces. `fail_after(n, mode)` makes the next chat fail after n
pieces, either with an {"error": ...} line (what Ollama sends when a model
crashes mid-reply) or by dropping the connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

FailMode = Literal["error", "drop"]


def echo_reply(messages: list[dict[str, Any]]) -> str:
    last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last_user}"


@dataclass
class _Failure:
    after_pieces: int
    mode: FailMode
    message: str


@dataclass
class OllamaStub:
    models: list[str] = field(default_factory=lambda: ["stub-llama:latest"])
    reply_for: Callable[[list[dict[str, Any]]], str] = echo_reply
    version: str = "0.6.3-stub"
    # 0: any free port. A fixed port lets a test start the app first and "bring
    # Ollama up" later, as when a user retries after an outage.
    port: int = 0
    # Every /api/chat request body, for tests that check what the app sent.
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    _failure: _Failure | None = None
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        assert self._server is not None, "stub not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> OllamaStub:
        stub = self

        class Handler(_Handler):
            pass

        Handler.stub = stub
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ollama-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> OllamaStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_after(self, pieces: int, mode: FailMode = "error", message: str = "") -> None:
        """Make the next /api/chat fail after sending `pieces` pieces."""
        with self._lock:
            self._failure = _Failure(
                pieces, mode, message or "llama runner process has terminated: signal: killed"
            )

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            failure, self._failure = self._failure, None
            return failure


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class _Handler(BaseHTTPRequestHandler):
    stub: OllamaStub
    protocol_version = "HTTP/1.1"  # chunked streaming, like the real server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._send_json(200, {"version": self.stub.version})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [_tag(name) for name in self.stub.models]})
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": "invalid JSON body"})
            return
        if self.path != "/api/chat":
            self._send_json(404, {"error": "404 page not found"})
            return
        self.stub.chat_requests.append(body)
        model = body.get("model") or ""
        if model not in self.stub.models:
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        reply = self.stub.reply_for(body.get("messages") or [])
        if body.get("stream", True) is False:
            self._send_json(200, _chat_line(model, reply, done=True))
            return
        self._stream(model, reply, self.stub._take_failure())

    def _stream(self, model: str, reply: str, failure: _Failure | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, piece in enumerate(_pieces(reply)):
            if failure is not None and index == failure.after_pieces:
                if failure.mode == "error":
                    self._chunk(json.dumps({"error": failure.message}).encode() + b"\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    # No terminating chunk: the client sees a truncated body.
                    self.close_connection = True
                return
            self._chunk(json.dumps(_chat_line(model, piece, done=False)).encode() + b"\n")
        self._chunk(json.dumps(_chat_line(model, "", done=True)).encode() + b"\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _chat_line(model: str, content: str, *, done: bool) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": model,
        "created_at": _now(),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        line |= {
            "done_reason": "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": 1,
            "prompt_eval_duration": 10,
            "eval_count": 1,
            "eval_duration": 10,
        }
    return line


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": 1234,
        "digest": "0" * 64,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "1B",
            "quantization_level": "Q4_0",
        },
    }
