"""One exchange with Label Studio: a deadline for all of it, a stop that cuts it short,
secrets kept out of every message, and every failure sorted by what to do.

- `Unavailable`: try again later (connection refused, timeouts, 408, 429, 5xx);
  `outcome_unknown` says whether an import may have happened anyway, `in_flight`
  whether Label Studio may still be working on it (our deadline or a gateway's
  504 ended the wait, not Label Studio's answer).
- `BadTasks`: Label Studio rejected the batch (400); nothing was imported.
- `RequestTooLarge`: the server or a proxy refused the body's size (413);
  nothing was imported.
- `Fatal` (`AccessDenied`, `ProjectNotFound`, `WrongServer`): a setting is
  wrong; retrying soon will not help.
- `Stopped`: a stop was requested while a request was in flight; it was abandoned.

Each exchange runs on a short-lived worker thread while the caller waits for
it, the stop event or the deadline for the whole exchange (connect, send,
every byte of the answer): a server that trickles its answer, or a DNS lookup
that hangs, costs at most the deadline, and a stop at most a tenth of a
second. An abandoned exchange's sockets are shut down so its worker ends too.

The API key is held by the SDK's client only. Everything that came from the
server (error bodies, headers) is scrubbed of the key and of the access tokens
a Personal Access Token is exchanged for before it is put in a message.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.client_wrapper import SyncClientWrapper

_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# An import of 1,000 tasks takes about a second; one held far longer is queued
# or overloaded, and waiting for its answer is better than leaving its outcome
# unknown. Longer than nginx's default proxy_read_timeout (60 s), so a proxy's
# 504 comes first.
DEFAULT_IMPORT_TIMEOUT_S = 120.0
_POLL_S = 0.1  # how often a waiting caller looks at the stop event
_BEAT_S = 1.0  # how often it calls the heartbeat while it waits
_STOP_GRACE_S = 0.5  # how long a stop lets an exchange finish before cutting it
_REDACTED = "<redacted>"  # not "[...]": rich would read it as markup
_URL_SETTING = "LABEL_STUDIO_URL"


class LabelStudioError(Exception):
    """Base of everything Label Studio answered, or did not."""


class Unavailable(LabelStudioError):
    """kind: unreachable | timeout | server (5xx, 408) | throttled (429)."""

    def __init__(
        self,
        what: str,
        *,
        kind: str,
        outcome_unknown: bool,
        retry_after_s: float | None = None,
        in_flight: bool = False,
    ) -> None:
        super().__init__(what)
        self.kind = kind
        self.outcome_unknown = outcome_unknown
        self.retry_after_s = retry_after_s
        self.in_flight = in_flight and outcome_unknown


class BadTasks(LabelStudioError):
    """HTTP 400 on import: Label Studio imports a batch whole or not at all."""


class RequestTooLarge(LabelStudioError):
    """HTTP 413: the body was over a size limit (Label Studio's or a reverse proxy's)."""

    def __init__(self, what: str, body_bytes: int) -> None:
        super().__init__(what)
        self.body_bytes = body_bytes


class Fatal(LabelStudioError):
    """A setting is wrong: stop (backfill) or report loudly and retry slowly (daemon)."""


class AccessDenied(Fatal):
    pass


class ProjectNotFound(Fatal):
    pass


class WrongServer(Fatal):
    """What answered is not Label Studio's API: a login page, another app, a redirect."""


class Stopped(Exception):
    """A stop was requested while waiting (for an answer, or to retry).

    An abandoned import is an unknown outcome: the engine's outbox holds it
    until it is resolved by asking Label Studio.
    """


def refuse_userinfo(url: str) -> None:
    """A user name or password in the URL would be printed, stored and not even used
    (Label Studio authenticates by the API key), so it is refused, never shown."""
    try:
        userinfo = httpx.URL(url).userinfo
    except httpx.InvalidURL:
        return  # the caller's own check says what is wrong
    if userinfo:
        raise ValueError(
            "must not contain a user name or password (user:password@); Label Studio "
            "authenticates with LABEL_STUDIO_API_KEY"
        )


def redact_url(url: str) -> str:
    """A URL fit to show: no user name, password, query or fragment."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<an invalid URL>"
    host = parsed.host
    if ":" in host:
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


class _Secrets:
    """What must never leave labelsync: the key and every access token it was exchanged for."""

    _JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
    # "Token <key>" / "Bearer <token>" of someone else's key: long, with a digit
    # (so "token authentication has been disabled" stays readable).
    _AUTH = re.compile(
        r"(?i)\b(token|bearer|basic)(?:\s+|%20|\+)"
        r"(?=[A-Za-z0-9._~+/=-]{16,})[A-Za-z0-9._~+/=-]*\d[A-Za-z0-9._~+/=-]*"
    )

    def __init__(self, api_key: str) -> None:
        self._lock = threading.Lock()
        self._values = {api_key} if len(api_key) >= 4 else set()

    def learn(self, authorization: str | None) -> None:
        if authorization and " " in authorization:
            value = authorization.split(" ", 1)[1].strip()
            if len(value) >= 4:
                with self._lock:
                    self._values.add(value)

    def scrub(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, _REDACTED)
        text = self._JWT.sub(_REDACTED, text)
        return self._AUTH.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)


class _Exchange:
    """One request on its worker thread; what the waiting caller learns about it."""

    def __init__(self, sockets: _Sockets, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.done = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.main = False  # the SDK's token refresh, if any, is done; our request is next
        self.body_sent = False  # every byte of our request's body left
        self._sockets = sockets

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: learn each new socket, and when the body has left."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                self._sockets.add(sock)
        elif event == "http11.send_request_body.complete" and self.main:
            self.body_sent = True


class _Sockets:
    """Every socket a client opened and has not dropped: shut down to end an abandoned
    exchange. A LabelStudio makes one exchange at a time, so nothing else is cut."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def shut_down(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class Connection:
    """Label Studio at one URL with one key: exchanges with a deadline, secrets kept out."""

    def __init__(
        self,
        url: str,
        api_key: str,
        project_id: int,
        timeout_s: float = 60.0,
        http: httpx.Client | None = None,
        *,
        import_timeout_s: float | None = None,
        stop: threading.Event | None = None,
        heartbeat: Callable[[], object] | None = None,
    ) -> None:
        refuse_userinfo(url)
        self.url = url.rstrip("/")
        self.project_id = project_id
        self.timeout_s = timeout_s  # every read: the whole exchange
        self.import_timeout_s = max(timeout_s, import_timeout_s or DEFAULT_IMPORT_TIMEOUT_S)
        self._stop = stop
        # Called while waiting for an answer: the daemon's watchdog ping, so a
        # long import is not mistaken for a hung loop.
        self._heartbeat = heartbeat or (lambda: None)
        self._secrets = _Secrets(api_key)
        self._sockets = _Sockets()
        self._local = threading.local()  # the exchange a worker thread is running
        self._http = http or httpx.Client(timeout=timeout_s)
        # Redirects are not followed: an API path here never redirects, so a 3xx is
        # a login page or a wrong URL (and a followed 302 turns an import into a GET).
        self._http.follow_redirects = False
        self._http.event_hooks["request"].append(self._on_request)
        # The SDK's core client only for auth: both kinds of key (a legacy token, or
        # a Personal Access Token it exchanges for access tokens and refreshes).
        # Its full client is not loaded: it imports every endpoint's models (~1 s
        # of start-up) and labelsync makes four kinds of call.
        try:
            self._sdk = SyncClientWrapper(
                # With the slash, its token refresh (urljoin) keeps a path prefix.
                base_url=self.url + "/",
                api_key=api_key,
                timeout=timeout_s,
                max_retries=0,
                httpx_client=self._http,
            )
        except ApiError as exc:  # an expired Personal Access Token, found offline
            problem = self._classify("check the API key", exc.status_code or 401, {}, exc.body)
            raise problem from None

    def __repr__(self) -> str:  # never the key
        return f"Connection(url={self.url!r})"

    def scrub(self, text: str) -> str:
        """Text from the server, fit for a message: no key, no access token."""
        return self._secrets.scrub(text)

    # -- one exchange ------------------------------------------------------------------
    def json(
        self,
        what: str,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        importing: bool = False,
        expect_body: bool = True,
    ) -> Any:
        """One exchange, its answer parsed, every failure sorted into the classes above.

        expect_body=False: an answer without a body (a DELETE's 204) is the success.
        """
        response, body_sent = self._exchange(what, method, path, params or {}, body, importing)
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("location")
            target = f" to {self.scrub(redact_url(str(response.url.join(where))))}" if where else ""
            raise WrongServer(
                f"{what}: {self.url} redirected{target} (HTTP {status}), where Label Studio's "
                f"API answers directly: check {_URL_SETTING} (a login page or a proxy?)"
            )
        if status >= 400:
            raise self._classify(
                what,
                status,
                response.headers,
                _body(response),
                importing and body_sent,
                len(body or b""),
            )
        if not expect_body and not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = "an HTML page" if _is_html(response) else "an answer that is not JSON"
            raise WrongServer(
                f"{what}: {self.url} answered HTTP {status} with {kind}, not Label Studio's "
                f"API: check {_URL_SETTING} (a login page or another application?)"
            ) from None

    def _exchange(
        self,
        what: str,
        method: str,
        path: str,
        params: dict[str, Any],
        body: bytes | None,
        importing: bool,
    ) -> tuple[httpx.Response, bool]:
        """Run the request on a worker; wait for it, the deadline or a stop."""
        deadline_s = self.import_timeout_s if importing else self.timeout_s
        if self._stop is not None and self._stop.is_set():
            raise Stopped(f"{what}: stopped before asking Label Studio")
        exchange = _Exchange(self._sockets, deadline_s)
        worker = threading.Thread(
            target=self._work,
            args=(exchange, method, f"{self.url}/{path}", params, body, deadline_s),
            name="labelsync-http",
            daemon=True,
        )
        started = time.monotonic()
        next_beat = started + _BEAT_S
        worker.start()
        while not exchange.done.wait(_POLL_S):
            now = time.monotonic()
            stopping = self._stop is not None and self._stop.is_set()
            if not stopping and now - started < deadline_s:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + _BEAT_S
                continue
            # An answer about to arrive (an import takes about a second) is better
            # recorded than left for the outbox to resolve: a short grace on a stop.
            if stopping and exchange.done.wait(_STOP_GRACE_S):
                break
            # Abandon: cut its sockets so the worker ends, then see how far it got.
            self._sockets.shut_down()
            worker.join(1.0)
            unknown = importing and (exchange.body_sent or worker.is_alive())
            if stopping:
                raise Stopped(f"{what}: stopped while waiting for Label Studio")
            setting = (
                "LABELSYNC_IMPORT_TIMEOUT_SECONDS" if importing else "LABELSYNC_TIMEOUT_SECONDS"
            )
            raise Unavailable(
                f"{what}: no complete answer from {self.url} within {deadline_s:g} s ({setting})",
                kind="timeout",
                outcome_unknown=unknown,
                in_flight=True,
            )
        if exchange.error is not None:
            raise self._failure(what, exchange, importing)
        assert exchange.response is not None
        return exchange.response, exchange.body_sent

    def _work(
        self,
        exchange: _Exchange,
        method: str,
        url: str,
        params: dict[str, Any],
        body: bytes | None,
        deadline_s: float,
    ) -> None:
        """The worker thread: the SDK's auth headers (a PAT may be exchanged here),
        then the request, its whole answer read."""
        self._local.exchange = exchange
        try:
            headers = self._sdk.get_headers()
            self._secrets.learn(headers.get("Authorization"))
            if body is not None:
                headers["Content-Type"] = "application/json"
            exchange.main = True
            exchange.response = self._http.request(
                method,
                url,
                params=params or None,
                content=body,
                headers=headers,
                timeout=deadline_s,  # a backstop per read; the caller keeps the real deadline
            )
        except BaseException as exc:  # handed to the caller, who sorts it
            exchange.error = exc
        finally:
            self._local.exchange = None
            exchange.done.set()

    def _on_request(self, request: httpx.Request) -> None:
        """httpx request hook: trace every request a worker sends, the SDK's token
        refresh included, so its sockets are known and can be cut."""
        exchange = getattr(self._local, "exchange", None)
        if exchange is not None:
            request.extensions["trace"] = exchange.trace

    def _failure(self, what: str, exchange: _Exchange, importing: bool) -> LabelStudioError:
        exc = exchange.error
        unknown = importing and exchange.body_sent
        if isinstance(exc, ApiError):  # the SDK's token exchange was refused
            return self._classify(what, exc.status_code or 0, exc.headers or {}, exc.body)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return Unavailable(
                f"{what}: cannot connect to {self.url}", kind="unreachable", outcome_unknown=False
            )
        if isinstance(exc, httpx.TimeoutException):
            return Unavailable(
                f"{what}: no answer from {self.url} within {exchange.deadline_s:g} s",
                kind="timeout",
                outcome_unknown=unknown,
                in_flight=True,
            )
        if isinstance(exc, httpx.HTTPError):
            return Unavailable(
                f"{what}: connection to {self.url} lost ({type(exc).__name__})",
                kind="unreachable",
                outcome_unknown=unknown,
                in_flight=True,
            )
        if isinstance(exc, ValueError):  # the token exchange answered something else
            return WrongServer(
                f"{what}: {self.url} answered the Personal Access Token exchange with "
                f"something that is not Label Studio's API: check {_URL_SETTING}"
            )
        return LabelStudioError(f"{what}: {type(exc).__name__}: {self.scrub(str(exc))[:300]}")

    def _classify(
        self,
        what: str,
        status: int,
        headers: Any,
        body: Any,
        outcome_unknown: bool = False,
        body_bytes: int = 0,
    ) -> LabelStudioError:
        detail = _detail(body, self.scrub)
        if status in (401, 403):
            return AccessDenied(
                f"Label Studio refused the API key (HTTP {status}{detail}): "
                "check LABEL_STUDIO_API_KEY (a legacy token or a Personal Access Token)"
            )
        if status == 404:
            return ProjectNotFound(
                f"{what}: project {self.project_id} not found at {self.url} (HTTP 404): "
                f"check LABEL_STUDIO_PROJECT_ID and {_URL_SETTING}"
            )
        if status == 400:
            return BadTasks(f"Label Studio rejected the data (HTTP 400{detail})")
        if status == 413:
            return RequestTooLarge(
                f"{what}: {self.url} refused a {body_bytes:,}-byte request as too large "
                f"(HTTP 413{detail})",
                body_bytes,
            )
        if status in _RETRYABLE_STATUS or status >= 500:
            if not detail and _looks_html(body):
                detail = ": an HTML error page, from a proxy in front of Label Studio?"
            return Unavailable(
                f"{what}: HTTP {status} from {self.url}{detail}",
                kind="throttled" if status == 429 else "server",
                outcome_unknown=outcome_unknown and (status >= 500 or status == 408),
                retry_after_s=_retry_after(headers or {}),
                # A gateway timeout: the proxy gave up waiting, Label Studio may not have.
                in_flight=status == 504,
            )
        return WrongServer(
            f"{what}: HTTP {status} from {self.url}{detail}, which Label Studio's API does "
            f"not answer here: check {_URL_SETTING}"
        )


def expect(ls: Connection, what: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise unexpected(ls, what, shape(value))
    return value


def unexpected(ls: Connection, what: str, shape: str) -> WrongServer:
    return WrongServer(
        f"{what}: {ls.url} answered with {shape}, not what Label Studio's API answers: "
        f"check {_URL_SETTING} (another application?)"
    )


def shape(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON list"
    if isinstance(value, dict):
        return "a JSON object of another shape"
    return "a JSON string" if isinstance(value, str) else "unexpected JSON"


def _retry_after(headers: Any) -> float | None:
    value = next((v for k, v in dict(headers).items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # not a number, not a date: the usual backoff decides
    return max(0.0, when.timestamp() - time.time())


def _is_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "") or _looks_html(response.text)


def _looks_html(body: Any) -> bool:
    return isinstance(body, str) and body.lstrip()[:1] == "<"


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _detail(body: Any, scrub: Callable[[str], str]) -> str:
    """A short reason from the server's answer, on one line, scrubbed of secrets."""
    text: Any = body
    if isinstance(body, dict):
        # "Validation error" alone says nothing: the per-field reasons do.
        text = body.get("validation_errors") or body.get("detail") or body.get("message") or body
    if isinstance(text, dict):
        text = "; ".join(f"{field}: {_flat(reasons)}" for field, reasons in text.items())
    line = " ".join(str(text).split()) if text else ""
    if line.startswith("<"):  # an HTML error page
        return ""
    # Scrubbed before it is cut short: a cut key would no longer match.
    line = scrub(line)
    return f": {line[:300]}" if line else ""


def _flat(reasons: Any) -> str:
    if isinstance(reasons, list):
        return ", ".join(_flat(r) for r in reasons if r not in ({}, "", None))
    return str(reasons)
