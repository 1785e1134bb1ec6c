"""Log lines for people (journald) or for shippers (`--log-format json`): one event a line.

Messages carry file names and server text, which may hold a newline, a carriage
return or another line break: written as they are, they would start a line
that looks like another event (`quarantined x.json\nINFO sent ...`). Every
message is written with those characters escaped, in both formats.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

# Whatever a terminal, journald or `str.splitlines` would take for the end of a
# line, and the other control characters (an escape sequence can rewrite a line).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """One line, whatever the text: control characters as \\n, \\r, \\x1b, \\u2028."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r"}
    if char in named:
        return named[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class OneLineFilter(logging.Filter):
    """Escape each record's message once, before any formatter (Rich's too) sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Escaping is idempotent (its output has no control characters left), so a
        # record seen by two handlers is fine.
        record.msg = escape(record.getMessage())
        record.args = None
        return True


class RedactFilter(logging.Filter):
    """With redaction on: a record's arguments (the file names, ids and server text a
    message is formatted with) go through `redact` before anything formats them. The
    message's own words are labelsync's and stay as they are."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._shown(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: self._shown(a) for k, a in record.args.items()}
        return True

    def _shown(self, value: object) -> object:
        if not isinstance(value, (str, PurePath)):
            return value
        try:
            return self.redact(str(value))
        except Exception:  # a log line must never take the daemon down, nor leak
            return "<not shown: redaction failed>"


def redact_arguments(redact: Callable[[str], str] | None) -> None:
    """Put a RedactFilter in front of every handler `setup` installed (first, so the
    one-line escaping sees redacted text)."""
    if redact is None:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.filters.insert(0, RedactFilter(redact))


class TextFormatter(logging.Formatter):
    """`LEVEL message`; a traceback's lines are indented under it, so none of them
    can pass for an event of its own."""

    def formatException(self, ei: Any) -> str:
        return "\n".join(f"  | {escape(line)}" for line in super().formatException(ei).splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes \n and the other C0 characters, not U+2028/U+2029 or
        # C1 controls (ensure_ascii=False keeps text readable): those are escaped here.
        return _UNSAFE.sub(
            lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False)
        )


def setup(level: str = "info", fmt: str = "text", handler: logging.Handler | None = None) -> None:
    handler = handler or logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(OneLineFilter())
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK and httpx log every request at INFO: too chatty for an operator's log.
    for noisy in ("httpx", "httpcore", "label_studio_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
