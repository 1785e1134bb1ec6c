"""Password login: who may sign in, and what a refused login says.

Chainlit refuses a login with the detail "credentialssignin", which its page
shows as "Unauthorized: credentialssignin". An exception raised from the
password callback is only logged (with a traceback) and dropped by Chainlit, so
the words are put in by a small ASGI middleware that rewrites the body of a
refused `POST .../login`, and of nothing else.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

WRONG_LOGIN = "Wrong user name or password."

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def password_matches(passwords: dict[str, str], username: str, password: str) -> bool:
    expected = passwords.get(username)
    # compare_digest: the time taken does not tell how much of a password was right.
    return expected is not None and hmac.compare_digest(expected, password)


class ReadableLoginRefusal:
    """ASGI middleware: a 401 from `POST .../login` carries `WRONG_LOGIN`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_login = (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and str(scope.get("path", "")).rstrip("/").endswith("/login")
        )
        if not is_login:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": WRONG_LOGIN}).encode()
        refused = False

        async def send_in_words(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in (b"content-length", b"content-type")
                ]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({**message, "headers": headers})
            elif refused and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": body})
            else:
                await send(message)

        await self.app(scope, receive, send_in_words)
