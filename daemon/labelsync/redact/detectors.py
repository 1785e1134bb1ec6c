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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from labelsync.redact import checks


class Hit(NamedTuple):
    start: int
    end: int
    key: str  # the normalised value: used for numbering, never shown


@dataclass(frozen=True)
class Detector:
    name: str
    placeholder: str
    find: Callable[[str], Iterator[Hit]] = field(repr=False, compare=False)
    spec: str = field(default="", repr=False)  # what else defines it (a custom regex)


# ---- e-mail ------------------------------------------------------------------

# Unicode letters are allowed (\w); the top-level domain must be letters, so
# `user@localhost` and `name@10.0.0.1` are not e-mail addresses here.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[\w-]+\.)+[^\W\d_]{2,24}\b")


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
_AUTHORITY_END = re.compile(r"[/?#\s\"'<>`]")


def _url_credentials(text: str) -> Iterator[Hit]:
    if "://" not in text:
        return
    for m in _SCHEME.finditer(text):
        start = m.end()
        end_m = _AUTHORITY_END.search(text, start)
        authority = text[start : end_m.start() if end_m else len(text)]
        # The last "@" ends the user information: a raw "@" in a pasted password
        # must not leave its tail visible.
        at = authority.rfind("@")
        if at <= 0 or ":" not in authority[:at]:
            continue  # no credentials, or a user name alone (ssh://git@host)
        yield Hit(start, start + at, authority[:at])


# ---- IP addresses ------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
# Colon-hex runs with at least two colons; `ipaddress` decides the rest.
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{3,45}(?![\w:])")
# Dotted quads that are versions or section numbers, not addresses.
_IPV4_NOT_AFTER = frozenset(
    {
        "version", "versions", "ver", "v", "build", "release", "firmware", "kernel",
        "patch", "update", "upgrade", "install", "installed", "sdk", "section", "chapter",
        "clause", "step", "oid",
    }
)


def _ips(text: str) -> Iterator[Hit]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if any(int(octet) > 255 for octet in m.group().split(".")):
                continue
            if _words_before(text, m.start(), 2) & _IPV4_NOT_AFTER:
                continue
            yield Hit(m.start(), m.end(), m.group())
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            value = m.group().rstrip(".")
            try:
                address = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            # "::" and "::1" carry nothing personal and read like code.
            if sum(c.isalnum() for c in value) < 2 or address.is_loopback:
                continue
            yield Hit(m.start(), m.start() + len(value), address.compressed)


# ---- payment cards -----------------------------------------------------------

# Digits in groups separated by one space or dash, taken whole: a candidate
# neither starts nor ends inside a longer run of digit groups (a 22-digit
# tracking number is not searched for a 16-digit card inside it).
_CARD = re.compile(r"(?<![\w.,+-])(?<!\d[ -])\d(?:[ -]?\d){11,18}(?![\w]|[ -]\d|[.,]\d)")


def _cards(text: str) -> Iterator[Hit]:
    for m in _CARD.finditer(text):
        value = m.group()
        separators = {c for c in value if not c.isdigit()}
        if len(separators) > 1:
            continue  # "4111 1111-1111 1111" is not how a card is written
        groups = re.split(r"[ -]", value)
        digits = "".join(groups)
        if checks.card_grouping_ok([len(g) for g in groups]) and checks.card_valid(digits):
            yield Hit(m.start(), m.end(), digits)


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


# ---- phone numbers -----------------------------------------------------------

# Digits with spaces, dashes, dots and parentheses; an optional "+" in front.
# Not after a letter, "#", "/", a currency sign or another number's separator.
_PHONE = re.compile(
    r"(?<![\w#/.:@$€£¥+\-])(?:\+ ?)?\(?\d[\d ().\u00a0\-]{5,24}\d(?![\w/@]|[.,:\-]?\d)"
)
_GROUP_SPLIT = re.compile(r"[^\d]+")
_DATE = re.compile(r"\(?\d{1,4}[.\- ]\d{1,2}[.\- ]\d{1,4}\)?")
_WORD = re.compile(r"[^\W\d_]+|#")
# A number after these words is an order, a document or a version, whatever its shape.
_PHONE_NOT_AFTER = frozenset(
    {
        "order", "orders", "invoice", "inv", "ref", "reference", "tracking", "track",
        "ticket", "case", "isbn", "serial", "sku", "po", "transaction", "txn",
        "confirmation", "booking", "reservation", "account", "acct", "iban", "id",
        "version", "build", "release", "model", "part", "item", "product", "receipt",
        "parcel", "shipment", "awb", "patent", "policy", "claim", "#", "code", "pin",
    }
)
_PHONE_AFTER = frozenset(
    {
        "phone", "telephone", "tel", "tél", "call", "calling", "ring", "mobile", "cell",
        "cellphone", "whatsapp", "sms", "text", "fax", "landline", "hotline", "dial",
        "number", "reach", "contact", "telefon", "telefono", "handy",
    }
)


def _words_before(text: str, start: int, count: int) -> set[str]:
    return {w.lower() for w in _WORD.findall(text[max(0, start - 40) : start])[-count:]}


def _phone_shape(candidate: str, before: set[str]) -> bool:
    """Whether a candidate reads as a phone number, given the words before it."""
    digits = "".join(c for c in candidate if c.isdigit())
    n = len(digits)
    groups = [g for g in _GROUP_SPLIT.split(candidate) if g]
    if candidate.startswith("+"):
        return 8 <= n <= 15  # E.164: a country code and at most 15 digits
    if before & _PHONE_NOT_AFTER:
        return False
    if _DATE.fullmatch(candidate) and n <= 8:
        return False  # 2024-03-15, 15.03.2024, 03 15 2024
    if "." in candidate and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return False  # a dotted quad is the IP detector's
    separated = len(groups) > 1
    asked = bool(before & _PHONE_AFTER)
    if digits.startswith("00") and separated:
        return 10 <= n <= 17  # 00 44 20 ...: the international prefix
    if checks.nanp(groups):
        return True
    if asked and not separated and (n == 10 or (n == 11 and digits[0] == "1")):
        return checks.nanp([digits[-10:-7], digits[-7:-4], digits[-4:]])  # 2025550143
    if digits[0] == "0" and digits[1] != "0" and 9 <= n <= 12:
        # Trunk-prefixed national numbers (UK, FR, DE, IT, NL, AU, ...): grouped
        # as people write them, or bare after a word that asks for a number.
        return (separated and len(groups[-1]) >= 2 and len(groups[0]) <= 5) or asked
    return asked and 7 <= n <= 12


def _phones(text: str) -> Iterator[Hit]:
    for m in _PHONE.finditer(text):
        raw = m.group()
        # A closing parenthesis without its opening one belongs to the sentence.
        if raw.endswith(")") and "(" not in raw:
            raw = raw[:-1]
        start = m.start()
        before = _words_before(text, start, 3)
        if _phone_shape(raw, before):
            yield Hit(start, start + len(raw), "".join(c for c in raw if c.isdigit()))
            continue
        # Two numbers side by side ("... 020 7946 0958 2024"): try the groups
        # separated by spaces, longest first from each start.
        yield from _phone_parts(text, start, raw, before)


def _phone_parts(text: str, start: int, raw: str, before: set[str]) -> Iterator[Hit]:
    parts = [(m.start(), m.end()) for m in re.finditer(r"\S+", raw)]
    if len(parts) < 2:
        return
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            if (i, j) == (0, len(parts)):
                continue
            piece = raw[parts[i][0] : parts[j - 1][1]]
            if piece[0].isdigit() or piece[0] in "+(":
                ctx = before if i == 0 else _words_before(text, start + parts[i][0], 3)
                if sum(c.isdigit() for c in piece) >= 7 and _phone_shape(piece, ctx):
                    digits = "".join(c for c in piece if c.isdigit())
                    yield Hit(start + parts[i][0], start + parts[j - 1][1], digits)
                    i = j - 1
                    break
        i += 1


# In priority order: where two hits overlap, the earlier detector wins.
# URL credentials first (a password may look like anything), then the
# checksum-validated numbers, then the shapes that depend on context.
BUILTINS: tuple[Detector, ...] = (
    Detector("url_credentials", "CREDENTIALS", _url_credentials),
    Detector("email", "EMAIL", _emails),
    Detector("iban", "IBAN", _ibans),
    Detector("card", "CARD", _cards),
    Detector("ip", "IP", _ips),
    Detector("phone", "PHONE", _phones),
)
