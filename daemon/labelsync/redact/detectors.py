"""The built-in detectors: where a value starts and ends, and what makes two the same.

Each detector is a `Detector`: a name (what `LABELSYNC_REDACT` lists), a
placeholder (`EMAIL` becomes `<EMAIL_1>`) and `find(text)`, which yields
`Hit(start, end, key)`. The key is the value normalised so that two spellings
of one value share a placeholder (an e-mail in any case, a phone number or a
card with any grouping); it never leaves the redactor.

The approach is the same everywhere: a cheap regular expression proposes
candidates (linear: every repetition consumes a character, and a look-behind
stops a candidate from starting inside a longer run), then Python rejects the
ones that fail a checksum, a number plan or their context.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import partial

from labelsync.redact import checks
from labelsync.redact.base import Detector, Hit, continues_a_run, side_by_side, words_before
from labelsync.redact.phone import find_phones

# ---- e-mail ------------------------------------------------------------------

# Unicode letters are allowed (\w); the top-level domain must be letters, so
# `user@localhost` and `name@10.0.0.1` are not e-mail addresses here, and
# neither is a URL's user@host (ssh://git@example.org).
_EMAIL = re.compile(r"(?<![\w.%+-])(?<!://)[\w.%+-]+@(?:[\w-]+\.)+[^\W\d_]{2,24}\b")


def _emails(text: str) -> Iterator[Hit]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        start, value = m.start(), m.group()
        # A local part does not start with a dot ("...see.me@x.com" is "me@").
        while value[0] == ".":
            start, value = start + 1, value[1:]
        yield Hit(start, m.end(), value.casefold())


# ---- URL credentials ---------------------------------------------------------

_SCHEME = re.compile(r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://")
# Pasted connection strings carry raw "#", "?" and "@" in passwords, so the
# URL is read up to white space or a quote, not up to the first delimiter.
_URL_END = re.compile(r"[\s\"'<>`]")


def _url_credentials(text: str) -> Iterator[Hit]:
    if "://" not in text:
        return
    for m in _SCHEME.finditer(text):
        start = m.end()
        end_m = _URL_END.search(text, start)
        url = text[start : end_m.start() if end_m else len(text)]
        # The last "@" ends the user information, so a raw "@" in a password
        # does not leave its tail visible; a "/" before it means the "@" is in
        # the path (https://host/@name), and no ":" means a user name alone
        # (ssh://git@host), which is not a credential.
        at = url.rfind("@")
        userinfo = url[:at]
        if at <= 0 or ":" not in userinfo or "/" in userinfo:
            continue
        yield Hit(start, start + at, userinfo)


# ---- IP addresses ------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
# Colon-hex runs with at least two colons; `ipaddress` decides the rest.
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{3,45}(?![\w:])")
# Dotted quads that are versions or section numbers, not addresses.
# fmt: off
_IPV4_NOT_AFTER = frozenset({
    "version", "versions", "ver", "v", "build", "release", "firmware", "kernel", "patch",
    "update", "upgrade", "install", "installed", "sdk", "section", "chapter", "clause", "step",
    "oid", "windows", "chrome", "firefox", "android", "ios", "macos", "python", "node", "java",
    "office", "driver", "bios",
})
# fmt: on


def _ips(text: str) -> Iterator[Hit]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if any(int(octet) > 255 for octet in m.group().split(".")):
                continue
            if words_before(text, m.start(), 2) & _IPV4_NOT_AFTER:
                continue
            yield Hit(m.start(), m.end(), m.group())
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            value = m.group().rstrip(".")
            try:
                address = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            # "::1" carries nothing personal, and "a::b" is more likely code.
            if sum(c.isalnum() for c in value) < 4 or address.is_loopback:
                continue
            yield Hit(m.start(), m.start() + len(value), address.compressed)


# ---- payment cards -----------------------------------------------------------

# A run of digit groups separated by one space or dash, taken whole (up to 25
# groups): a candidate neither starts nor ends inside a longer run.
_DIGIT_RUN = re.compile(r"(?<![\w.,+-])\d+(?:[ -]\d+){0,24}(?![\w]|[.,]\d)")
_RUN_PART = re.compile(r"\d+")


def _cards(text: str) -> Iterator[Hit]:
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        if len(run) < 12 or continues_a_run(text, m.start()):
            continue
        parts = [(p.start(), p.end()) for p in _RUN_PART.finditer(run)]
        if sum(e - s for s, e in parts) < 13:
            continue
        for i, j in side_by_side(len(parts), partial(_is_card, run, parts), widest=5):
            start, end = m.start() + parts[i][0], m.start() + parts[j - 1][1]
            yield Hit(start, end, "".join(c for c in text[start:end] if c.isdigit()))


def _is_card(run: str, parts: list[tuple[int, int]], i: int, j: int) -> bool:
    """Whether digit groups i..j of the run are one card (4-4-4-4-3 at most: 5 groups)."""
    lengths = [e - s for s, e in parts[i:j]]
    if not 13 <= sum(lengths) <= 19 or not checks.card_grouping_ok(lengths):
        return False
    if len({run[parts[k][1]] for k in range(i, j - 1)}) > 1:
        return False  # "4111 1111-1111 1111" is not how a card is written
    return checks.card_valid("".join(run[s:e] for s, e in parts[i:j]))


# ---- IBAN --------------------------------------------------------------------

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")


def _ibans(text: str) -> Iterator[Hit]:
    for m in _IBAN_START.finditer(text):
        length = checks.IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        # Walk the characters until the country's length is reached, allowing
        # one space (or dash) between characters; what follows must not be glued on.
        compact, i = [m.group(1).upper(), m.group(2)], m.end()
        count = 4
        while count < length and i < len(text):
            char = text[i]
            if char.isascii() and char.isalnum():
                compact.append(char.upper())
                count += 1
                i += 1
            elif char in " -" and i + 1 < len(text) and text[i + 1].isalnum():
                i += 1
            else:
                break
        if count != length or (i < len(text) and text[i].isalnum()):
            continue
        value = "".join(compact)
        if checks.iban_valid(value):
            yield Hit(m.start(), i, value)


# In priority order: where two hits overlap, the earlier detector wins.
# URL credentials first (a password may look like anything), then the
# checksum-validated numbers, then the shapes that depend on context.
BUILTINS: tuple[Detector, ...] = (
    Detector("url_credentials", "CREDENTIALS", _url_credentials),
    Detector("email", "EMAIL", _emails),
    Detector("iban", "IBAN", _ibans),
    Detector("card", "CARD", _cards),
    Detector("ip", "IP", _ips),
    Detector("phone", "PHONE", find_phones),
)
