"""Phone numbers: international and common national shapes, not dates, orders or versions.

A candidate is a whole run of digits with spaces, dashes, dots or parentheses.
It is a phone number when it starts with "+" (8 to 15 digits, E.164); or, unless
a word before it says it is an order, invoice, version, ... (`_PHONE_NOT_AFTER`):
when it starts with "00" and is grouped; when it is grouped as a North American
number; when it is a trunk-prefixed national number (0 then 8 to 11 digits,
grouped as people write them); or, after a word that asks for a number ("call",
"phone", "mobile", ... in `_PHONE_AFTER`), any 7 to 12 digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from labelsync.redact import checks
from labelsync.redact.base import Hit, words_before

# Digits with spaces, dashes, dots and parentheses; an optional "+" in front.
# Not after a letter, "#", "/", a currency sign or another number's separator;
# like cards, a candidate is a whole run of digit groups, never a piece of one.
_PHONE = re.compile(
    r"(?<![\w#/.:@$€£¥+\-])(?<!\d[ \u00a0])(?:\+ ?)?\(?\d[\d ().\u00a0\-]{5,40}\d"
    r"(?![\w/@]|[ \u00a0.,:\-]?\d)"
)
_GROUP_SPLIT = re.compile(r"[^\d]+")
_DATE = re.compile(r"\(?\d{1,4}[.\- ]\d{1,2}[.\- ]\d{1,4}\)?")
# A number after these words is an order, a document or a version, whatever its shape.
# fmt: off
_PHONE_NOT_AFTER = frozenset({
    "order", "orders", "invoice", "inv", "ref", "reference", "tracking", "track", "ticket",
    "case", "isbn", "serial", "sku", "po", "transaction", "txn", "confirmation", "booking",
    "reservation", "account", "acct", "iban", "id", "version", "build", "release", "model",
    "part", "item", "product", "receipt", "parcel", "shipment", "awb", "patent", "policy",
    "claim", "#", "code", "pin",
})
_PHONE_AFTER = frozenset({
    "phone", "telephone", "tel", "tél", "call", "calling", "ring", "mobile", "cell",
    "cellphone", "whatsapp", "sms", "text", "fax", "landline", "hotline", "dial", "number",
    "reach", "contact", "telefon", "telefono", "handy",
})
# fmt: on


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
    bare = not separated and (n == 10 or (n == 11 and digits[0] == "1"))
    if asked and bare and checks.nanp([digits[-10:-7], digits[-7:-4], digits[-4:]]):
        return True  # "call 2025550143"
    if digits[0] == "0" and digits[1] != "0" and 9 <= n <= 12:
        # Trunk-prefixed national numbers (UK, FR, DE, IT, NL, AU, ...): grouped
        # as people write them, or bare after a word that asks for a number.
        return (separated and len(groups[-1]) >= 2 and len(groups[0]) <= 5) or asked
    return asked and 7 <= n <= 12


def find_phones(text: str) -> Iterator[Hit]:
    for m in _PHONE.finditer(text):
        raw = m.group()
        # A closing parenthesis without its opening one belongs to the sentence.
        if raw.endswith(")") and "(" not in raw:
            raw = raw[:-1]
        start = m.start()
        before = words_before(text, start, 3)
        if _phone_shape(raw, before):
            yield Hit(start, start + len(raw), "".join(c for c in raw if c.isdigit()))
            continue
        # Two numbers side by side ("call 020 7946 0958 2024"): a phone number
        # may start or end the run, never sit in its middle.
        yield from _phone_ends(text, start, raw, before)


def _phone_ends(text: str, start: int, raw: str, before: set[str]) -> Iterator[Hit]:
    parts = [(m.start(), m.end()) for m in re.finditer(r"\S+", raw)]
    n = len(parts)
    # Digits before each part, so a piece's digit count is one subtraction.
    upto = [0]
    for s, e in parts:
        upto.append(upto[-1] + sum(c.isdigit() for c in raw[s:e]))

    def piece(i: int, j: int) -> Hit | None:
        if not 7 <= upto[j] - upto[i] <= 17:
            return None
        value = raw[parts[i][0] : parts[j - 1][1]]
        if not (value[0].isdigit() or value[0] in "+("):
            return None
        ctx = before if i == 0 else words_before(text, start + parts[i][0], 3)
        if not _phone_shape(value, ctx):
            return None
        return Hit(
            start + parts[i][0], start + parts[j - 1][1], "".join(filter(str.isdigit, value))
        )

    # The number beside the phone is one group ("2024", "12"), or a second
    # phone number; otherwise the run is one long number (a parcel's) that
    # merely contains phone-shaped pieces.
    for j in range(n - 1, 0, -1):
        head = piece(0, j)
        rest = piece(j, n) if head and n - j > 1 else None
        if head and (n - j == 1 or rest):
            yield head
            if rest:
                yield rest
            return
    tail = piece(1, n)
    if tail:
        yield tail
