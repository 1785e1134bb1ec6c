"""Checksums and number plans the built-in detectors validate candidates with.

Pure functions over digit strings: no regular expressions, no text around the
value. Kept apart from the detectors so the tables can be read (and checked
against their registries) on their own.
"""

from __future__ import annotations

# IBAN length per country, from the SWIFT IBAN registry (release 2024/2025),
# cross-checked against schwifty's generated registry. Countries outside the
# registry (the "experimental" French-territory and African formats) are left
# out: a code that is not here is not an IBAN to this detector.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """ISO 13616 / ISO 7064 mod 97-10 on an upper-case IBAN without spaces."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    if not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters count as 10..35; int() of the whole string is fast at IBAN sizes.
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (lowest prefix, highest prefix, lengths): the issuer ranges of the card
# networks people paste into chats. A Luhn-valid number outside these ranges
# (an IMEI, a parcel number) is not a card to this detector. Ranges follow the
# networks' published IIN tables; UATP/AirPlus (prefix 1) is left out on
# purpose: 15-digit numbers starting with 1 are too often something else.
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa, Visa Electron
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("2200", "2204", frozenset({16, 17, 18, 19})),  # Mir
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("300", "305", frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    ("36", "36", frozenset({14, 15, 16, 17, 18, 19})),
    ("38", "39", frozenset({14, 15, 16, 17, 18, 19})),
    ("3528", "3589", frozenset({16, 17, 18, 19})),  # JCB
    ("6011", "6011", frozenset({16, 17, 18, 19})),  # Discover
    ("644", "649", frozenset({16, 17, 18, 19})),
    ("65", "65", frozenset({16, 17, 18, 19})),
    ("62", "62", frozenset({16, 17, 18, 19})),  # UnionPay
    # Maestro and Dankort; Maestro's rare 12-15 digit numbers are left out, as a
    # 12-digit order number starting with 6 passes Luhn one time in ten.
    ("50", "50", frozenset({16, 17, 18, 19})),
    ("56", "69", frozenset({16, 17, 18, 19})),
)


def card_valid(digits: str) -> bool:
    """A Luhn-valid number of a length its issuer range uses."""
    n = len(digits)
    for low, high, lengths in _CARD_RANGES:
        prefix = digits[: len(low)]
        if low <= prefix <= high and n in lengths:
            return luhn_valid(digits)
    return False


def card_grouping_ok(groups: list[int]) -> bool:
    """How people and card faces group the digits: 4-4-4-4(-3), 4-6-5, 4-6-4, or none."""
    if len(groups) == 1:
        return True
    if groups in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


def nanp(groups: list[str]) -> bool:
    """North American numbering: [1] NXX NXX XXXX, grouped as written."""
    if len(groups) == 4 and groups[0] == "1":
        groups = groups[1:]
    if [len(g) for g in groups] != [3, 3, 4]:
        return False
    return groups[0][0] in "23456789" and groups[1][0] in "23456789"
