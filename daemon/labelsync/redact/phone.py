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
from functools import partial

from labelsync.redact import checks
from labelsync.redact.base import Hit, continues_a_run, side_by_side, words_before

# Digits with spaces, dashes, dots and parentheses; an optional "+" in front.
# Not after a letter, "#", "/", a currency sign or another number's separator;
# like cards, a candidate is a whole run of digit groups, never a piece of one.
_PHONE = re.compile(
    r"(?<![\w#/.:@$€£¥+\-])(?:\+ ?)?\(?\d[\d ().\u00a0\-]{5,40}\d\)?"
    r"(?![\w/@)]|[ \u00a0.,:\-]?\d)"
)
_GROUP_SPLIT = re.compile(r"[^\d]+")
_PART = re.compile(r"\S+")
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
    if checks.nanp(groups) and any(c in candidate for c in "(-."):
        return True  # (415) 555-0132, 415-555-0132: no order number looks like that
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
        if raw[0] != "+" and continues_a_run(text, start):
            continue
        before = words_before(text, start, 3)
        if _phone_shape(raw, before):
            yield Hit(start, start + len(raw), *_key(raw))
            continue
        # Numbers side by side ("call 020 7946 0958 2024", a list of numbers):
        # read the run, split at spaces, as phone numbers next to each other.
        parts = [(p.start(), p.end()) for p in _PART.finditer(raw)]
        upto = [0]  # digits before each part, so a piece's count is one subtraction
        for s, e in parts:
            upto.append(upto[-1] + sum(c.isdigit() for c in raw[s:e]))
        fits = partial(_is_phone, text, start, raw, parts, upto, before - _PHONE_AFTER)
        for i, j in side_by_side(len(parts), fits, widest=7):  # +33 6 12 34 56 78
            piece = raw[parts[i][0] : parts[j - 1][1]]
            yield Hit(start + parts[i][0], start + parts[j - 1][1], *_key(piece))


def _key(number: str) -> tuple[str, tuple[str, ...]]:
    """The key of a number, and for an international one the keys of its national forms.

    "+44 20 7946 0958" and "020 7946 0958", or "+1 415 555 0132" and
    "(415) 555-0132", are one number written two ways; two international
    numbers are one only when all their digits are (a wrong country code shows).
    """
    digits = "".join(c for c in number if c.isdigit())
    if number.startswith("+") or digits.startswith("00"):
        digits = digits.removeprefix("00")
        # The country code is 1 to 3 digits; Italy keeps its 0 after it.
        national = tuple(digits[k:] for k in (1, 2, 3) if len(digits) - k >= 7)
        return "+" + digits, national
    if digits.startswith("0"):
        return digits[1:], ()  # the trunk prefix
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:], ()  # 1-800-555-0199
    return digits, ()


def _is_phone(
    text: str,
    start: int,
    raw: str,
    parts: list[tuple[int, int]],
    upto: list[int],
    before: set[str],
    i: int,
    j: int,
) -> bool:
    """Whether parts i..j of a run that starts at `start` are one phone number."""
    if not 7 <= upto[j] - upto[i] <= 17:
        return False
    piece = raw[parts[i][0] : parts[j - 1][1]]
    if not (piece[0].isdigit() or piece[0] in "+("):
        return False
    context = before if i == 0 else words_before(text, start + parts[i][0], 3) - _PHONE_AFTER
    return _phone_shape(piece, context)
