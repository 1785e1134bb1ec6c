"""Redaction: what each detector replaces and leaves, numbering, custom patterns, the setting."""

from __future__ import annotations

import ipaddress
import itertools
import string
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelsync.redact import (
    BUILTIN_DETECTORS,
    CustomPattern,
    RedactionConfigError,
    Redactor,
    build_redactor,
)
from labelsync.redact.checks import IBAN_LENGTHS
from labelsync.redact.detectors import _IPV4_NOT_AFTER
from labelsync.redact.phone import _PHONE_NOT_AFTER

DEFAULT = build_redactor("default")


def one(text: str, redactor: Redactor = DEFAULT) -> str:
    return redactor.redact([text]).texts[0]


# ---- each detector: hits ---------------------------------------------------------

HITS = [
    # e-mail
    ("write to maria.gonzalez@example.com today", "write to <EMAIL_1> today"),
    ("Mail: J.Smith+shop@mail.example.co.uk.", "Mail: <EMAIL_1>."),
    ("josé.garcía@correo.es", "<EMAIL_1>"),
    ("<ana_b-92@uni-example.edu>", "<<EMAIL_1>>"),
    # phone: international
    ("call +44 20 7946 0958 now", "call <PHONE_1> now"),
    ("+1 (415) 555-0132", "<PHONE_1>"),
    ("+33 6 12 34 56 78", "<PHONE_1>"),
    ("+4915123456789", "<PHONE_1>"),
    ("+44(0)7700 900123.", "<PHONE_1>."),
    ("00 44 20 7946 0958", "<PHONE_1>"),
    # phone: national, as people group them
    ("(415) 555-0132", "<PHONE_1>"),
    ("415-555-0132 or 415.555.0133", "<PHONE_1> or <PHONE_2>"),
    ("1-800-555-0199", "<PHONE_1>"),
    ("020 7946 0958", "<PHONE_1>"),
    ("07700 900123", "<PHONE_1>"),
    ("06 12 34 56 78", "<PHONE_1>"),
    ("030 12345678", "<PHONE_1>"),
    ("(02) 9876 5432", "<PHONE_1>"),
    # phone: bare digits after a word that asks for a number
    ("my number is 0612345678", "my number is <PHONE_1>"),
    ("call 2025550143", "call <PHONE_1>"),
    ("mobile: 555-0143", "mobile: <PHONE_1>"),
    # phone beside another number
    ("call 020 7946 0958 2024", "call <PHONE_1> 2024"),
    # cards: Luhn-valid, in the issuer's lengths, grouped as people write them
    ("card 4111 1111 1111 1111 exp 08/27", "card <CARD_1> exp 08/27"),
    ("4111-1111-1111-1111", "<CARD_1>"),
    ("5555555555554444", "<CARD_1>"),
    ("amex 3782 822463 10005", "amex <CARD_1>"),
    ("diners 30569309025904.", "diners <CARD_1>."),
    # IBANs: mod-97 valid, compact or in groups of four
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN_1> please"),
    ("GB29NWBK60161331926819", "<IBAN_1>"),
    ("fr14 2004 1010 0505 0001 3m02 606", "<IBAN_1>"),
    ("NO9386011117947.", "<IBAN_1>."),
    # IP addresses
    ("blocked from 203.0.113.7, then 10.0.0.1:8080", "blocked from <IP_1>, then <IP_2>:8080"),
    ("2001:db8::8a2e:370:7334", "<IP_1>"),
    ("http://[fe80::1ff:fe23:4567:890a]:80/", "http://[<IP_1>]:80/"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "<IP_1>"),
    # URL credentials: the user information only, the host stays
    (
        "postgres://admin:s3cret@db.internal:5432/app",
        "postgres://<CREDENTIALS_1>@db.internal:5432/app",
    ),
    ("redis://:p#ss@w0rd@cache:6379", "redis://<CREDENTIALS_1>@cache:6379"),
    ("`https://bob:hunter2@example.com/x`", "`https://<CREDENTIALS_1>@example.com/x`"),
]


@pytest.mark.parametrize(("text", "expected"), HITS)
def test_each_detector_replaces_what_it_claims(text: str, expected: str) -> None:
    assert one(text) == expected


# ---- near misses: left alone -----------------------------------------------------

NEAR_MISSES = [
    # not e-mail
    "ping @maria_g on chat",
    "root@localhost",
    "ssh://git@example.org/team/app.git",
    "name at example dot com",
    # dates, times, versions, prices, order numbers, ISBNs, tracking numbers
    "due 2024-03-15, or 15/03/2024, or 15.03.2024, or 03-15-2024 at 10:30",
    "version 1.2.3.4 and build 4.0.0.12; Chrome 120.0.6099.109; upgrade to 2.4.1.3",
    "Python 3.11.7 and v10.4.1.2",
    "it costs $1,234.56 or 1.234,56 € or 1 234,56 €",
    "order 4500012345 shipped; Order #100234567; ORD-2024-000123; PO 7700123456",
    "ISBN 978-3-16-148410-0 and 0-306-40615-2",
    "tracking 1Z999AA10123456784 and 9400 1000 0000 0000 0000 00",
    "USPS 9400 1937 5205 0995 7477 03",
    "invoice 0123456789",
    "pages 123-145, between 2019-2023, zip 90210-1234",
    "SSN 123-45-6789",
    "1,000,000 users",
    # hex and other ids
    "commit 3f2a9c1d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c, request 550e8400-e29b-41d4-a716-446655440000",
    "MAC 00:1A:2B:3C:4D:5E at 12:30:45",
    "0x7ffe3a2b and std::vector and a::b",
    "the loopback ::1 and ::",
    # cards: Luhn-invalid, wrong length for the issuer, an IMEI
    "card 4111 1111 1111 1112",
    "IMEI 490154203237518",
    "4111 1111-1111 1111",
    # IBANs: too short, or glued to other text
    "DE89 3704",
    "XDE89370400440532013000",
    # IP look-alikes
    "999.1.1.1 and 1.2.3.4.5",
    # URLs without credentials
    "https://example.com/@maria/post and https://user@example.com/",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_left_alone(text: str) -> None:
    assert one(text) == text


@pytest.mark.parametrize(
    "text", ["DE89 3704 0044 0532 0130 01", "XX89 3704 0044 0532 0130 00", "DE8937040044053201300"]
)
def test_ibans_with_bad_check_digits_or_country_or_length_are_not_ibans(text: str) -> None:
    # The digit groups after the country code may still be read as a phone
    # number ("0044 0532 0130 01"): harmless, and better than a leak.
    assert "<IBAN_" not in one(text)


def test_priority_url_credentials_over_email_and_ip_host_still_redacted() -> None:
    # The password holds an address-like "@": it belongs to the credentials,
    # and the host, an IP address, is redacted as an address.
    out = one("mysql://app:pa@ss@10.0.3.7:3306/db")
    assert out == "mysql://<CREDENTIALS_1>@<IP_1>:3306/db"


# ---- numbering -------------------------------------------------------------------


def test_same_value_same_placeholder_across_messages_in_order_of_first_appearance() -> None:
    result = DEFAULT.redact(
        [
            "Hi, I'm maria@example.com, or m.g@example.org",
            "Got it, I'll write to Maria@Example.COM. Card 4111 1111 1111 1111?",
            "Yes 4111111111111111, and call +44 20 7946 0958",
            "Or +44-20-7946-0958, in the UK 020 7946 0958. New mail: m.g@example.org",
            "My other phone is +44 20 7946 0959",
        ]
    )
    assert result.texts == (
        "Hi, I'm <EMAIL_1>, or <EMAIL_2>",
        "Got it, I'll write to <EMAIL_1>. Card <CARD_1>?",
        "Yes <CARD_1>, and call <PHONE_1>",
        "Or <PHONE_1>, in the UK <PHONE_1>. New mail: <EMAIL_2>",
        "My other phone is <PHONE_2>",
    )
    assert dict(result.counts) == {"email": 4, "card": 2, "phone": 4}
    assert result.total == 10


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("+44 20 7946 0958", "020 7946 0958", True),
        ("020 7946 0958", "+44 (0)20 7946 0958", True),
        ("(415) 555-0132", "+1 415 555 0132", True),
        ("+1-800-555-0199", "1-800-555-0199", True),
        ("+39 02 1234 5678", "02 1234 5678", True),
        ("+44 20 7946 0958", "+45 20 7946 0958", False),  # a wrong country code shows
        ("+1 212 555 0100", "+44 212 555 0100", False),
        ("020 7946 0958", "020 7946 0959", False),
    ],
)
def test_a_phone_number_written_nationally_or_internationally_is_one_number(
    first: str, second: str, same: bool
) -> None:
    texts = DEFAULT.redact([f"call {first}", f"or {second}"]).texts
    assert texts == ("call <PHONE_1>", f"or <PHONE_{1 if same else 2}>")


def test_numbering_starts_again_for_each_conversation() -> None:
    first = DEFAULT.redact(["a@example.com", "b@example.com"])
    second = DEFAULT.redact(["b@example.com"])
    assert first.texts == ("<EMAIL_1>", "<EMAIL_2>")
    assert second.texts == ("<EMAIL_1>",)


def test_placeholders_already_present_are_kept_and_numbering_continues() -> None:
    result = DEFAULT.redact(["I typed <EMAIL_1> literally", "my mail is new@example.com"])
    assert result.texts == ("I typed <EMAIL_1> literally", "my mail is <EMAIL_2>")
    again = DEFAULT.redact(list(result.texts))
    assert again.texts == result.texts
    assert again.total == 0


def test_findings_point_into_the_original_text() -> None:
    text = "mail a@example.com, call +44 20 7946 0958"
    (findings,) = DEFAULT.redact([text]).findings
    assert [(text[f.start : f.end], f.detector, f.placeholder) for f in findings] == [
        ("a@example.com", "email", "<EMAIL_1>"),
        ("+44 20 7946 0958", "phone", "<PHONE_1>"),
    ]


def test_off_returns_texts_unchanged() -> None:
    off = build_redactor(None)
    texts = ["a@example.com", "+44 20 7946 0958"]
    result = off.redact(texts)
    assert result.texts == tuple(texts)
    assert not off.enabled
    assert result.total == 0
    assert result.findings == ((), ())


def test_wrong_input_is_refused_without_quoting_it() -> None:
    with pytest.raises(TypeError, match="not one str"):
        DEFAULT.redact("a@example.com")
    with pytest.raises(TypeError) as info:
        DEFAULT.redact(["fine", b"a@example.com"])  # type: ignore[list-item]
    assert "example" not in str(info.value)


# ---- custom patterns -------------------------------------------------------------


def test_custom_patterns_are_numbered_and_counted_like_built_ins() -> None:
    redactor = build_redactor(
        "default",
        [
            {"name": "employee_id", "regex": r"\bEMP-\d{6}\b", "placeholder": "EMPLOYEE_ID"},
            CustomPattern("ticket", r"(?i)ticket (?P<value>[A-Z]{3}-\d+)", "<TICKET>"),
        ],
    )
    result = redactor.redact(
        ["EMP-123456 asked about Ticket ABC-42", "EMP-123456 again, EMP-654321 too; a@example.com"]
    )
    assert result.texts == (
        "<EMPLOYEE_ID_1> asked about Ticket <TICKET_1>",
        "<EMPLOYEE_ID_1> again, <EMPLOYEE_ID_2> too; <EMAIL_1>",
    )
    assert dict(result.counts) == {"employee_id": 3, "ticket": 1, "email": 1}
    assert redactor.detector_names[-2:] == ("employee_id", "ticket")


def test_a_custom_pattern_runs_only_when_named_or_default() -> None:
    patterns = [{"name": "badge", "regex": r"B-\d{4}", "placeholder": "BADGE"}]
    assert one("B-1234 a@example.com", build_redactor("email", patterns)) == "B-1234 <EMAIL_1>"
    assert (
        one("B-1234 a@example.com", build_redactor("badge", patterns)) == "<BADGE_1> a@example.com"
    )
    assert one("B-1234 a@example.com", build_redactor("default", patterns)) == (
        "<BADGE_1> <EMAIL_1>"
    )


BAD_PATTERNS = [
    (
        {"name": "emp", "regex": "EMP-(\\d{6}", "placeholder": "EMP"},
        "redaction pattern 'emp': regex does not compile: missing ), unterminated subpattern",
    ),
    (
        {"name": "anything", "regex": "x*", "placeholder": "X"},
        "redaction pattern 'anything': regex matches the empty string",
    ),
    (
        {"name": "Bad Name", "regex": "x", "placeholder": "X"},
        "redaction pattern 1: name must be",
    ),
    (
        {"name": "emp", "regex": "x", "placeholder": "emp id"},
        "redaction pattern 'emp': placeholder must be",
    ),
    (
        {"name": "email", "regex": "x", "placeholder": "X"},
        "redaction pattern 'email': the name is taken by a built-in detector",
    ),
    (
        {"name": "emp", "regex": "x", "placeholder": "X", "flags": "i"},
        "redaction pattern 'emp': unknown key(s) flags",
    ),
    (
        {"name": "emp", "placeholder": "X"},
        "redaction pattern 'emp': regex is missing",
    ),
    ("EMP-\\d+", "redaction pattern 1: expected a table with name, regex and placeholder"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS)
def test_bad_custom_patterns_are_named_in_the_error(pattern: object, message: str) -> None:
    with pytest.raises(RedactionConfigError) as info:
        build_redactor("default", [pattern])  # type: ignore[list-item]
    assert message in str(info.value)


def test_every_problem_is_reported_at_once_even_when_redaction_is_off() -> None:
    patterns = [
        {"name": "one", "regex": "(", "placeholder": "ONE"},
        {"name": "one", "regex": "x", "placeholder": "ONE"},
    ]
    with pytest.raises(RedactionConfigError) as info:
        build_redactor("off", patterns)
    message = str(info.value)
    assert "redaction pattern 'one': regex does not compile" in message
    assert "redaction pattern 'one': defined twice" in message
    with pytest.raises(RedactionConfigError) as info:
        build_redactor("emial,phone", patterns[:1])
    assert str(info.value).startswith("LABELSYNC_REDACT: unknown detector 'emial'")
    assert "regex does not compile" in str(info.value)


# ---- the setting -----------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "off", "OFF", " none ", "false", "0", []])
def test_off_by_default_and_its_spellings(value: str | list[str] | None) -> None:
    assert build_redactor(value).detector_names == ()


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("default", BUILTIN_DETECTORS),
        ("email", ("email",)),
        ("phone, EMAIL ,card", ("email", "card", "phone")),  # priority order, not list order
        (["iban", "ip"], ("iban", "ip")),  # a TOML list
        ("default,email", BUILTIN_DETECTORS),
    ],
)
def test_setting_names_the_detectors_that_run(
    value: str | list[str], names: tuple[str, ...]
) -> None:
    assert build_redactor(value).detector_names == names


def test_unknown_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(RedactionConfigError) as info:
        build_redactor("email,creditcard,phones")
    assert str(info.value) == (
        "LABELSYNC_REDACT: unknown detectors 'creditcard', 'phones' (valid: off, default, "
        "url_credentials, email, iban, card, ip, phone, person, location, organization, ner)"
    )
    with pytest.raises(RedactionConfigError, match="'off,email' mixes off with detector names"):
        build_redactor("off,email")


def test_config_id_follows_the_configuration() -> None:
    pattern = [{"name": "badge", "regex": r"B-\d{4}", "placeholder": "BADGE"}]
    assert build_redactor("default").config_id == DEFAULT.config_id
    assert build_redactor("email").config_id != DEFAULT.config_id
    assert build_redactor("default", pattern).config_id != DEFAULT.config_id


# ---- nothing but the redacted text holds a value -----------------------------------


def test_no_value_in_counts_findings_reprs_or_errors() -> None:
    values = ["maria@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "203.0.113.7"]
    redactor = build_redactor("default", [{"name": "badge", "regex": "B-99", "placeholder": "B"}])
    result = redactor.redact([" and ".join(values), "B-99"])
    exposed = " ".join(
        [repr(result.counts), repr(result.findings), repr(redactor), str(result.total)]
    )
    for value in [*values, "B-99"]:
        assert value not in exposed
        assert value not in " ".join(result.texts)


def test_threads_share_one_redactor() -> None:
    conversations = [
        [f"user{i}@example.com wrote", f"call +44 20 7946 {i:04d}", f"user{i}@example.com again"]
        for i in range(300)
    ]
    expected = [DEFAULT.redact(c).texts for c in conversations]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda c: DEFAULT.redact(c).texts, conversations))
    assert got == expected
    assert got[7] == ("<EMAIL_1> wrote", "call <PHONE_1>", "<EMAIL_1> again")


# ---- property: seeded values never survive, and a second pass changes nothing ------


def _luhn(partial: str) -> str:
    for check in string.digits:
        total = 0
        for i, c in enumerate(reversed(partial + check)):
            n = int(c) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return partial + check
    raise AssertionError


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


_lower = st.text(string.ascii_lowercase, min_size=1, max_size=8)
emails = st.builds(
    lambda user, tag, domain, tld: f"{user}{tag}@{domain}.{tld}",
    _lower,
    st.sampled_from(["", ".x", "+news", "_1"]),
    _lower,
    st.text(string.ascii_lowercase, min_size=2, max_size=6),
)
cards = st.builds(
    lambda prefix, body, sep: _group(_luhn(prefix + body[: 15 - len(prefix)]), sep),
    st.sampled_from(["4", "51", "55", "2221", "6011", "65", "3528"]),
    st.text(string.digits, min_size=15, max_size=15),
    st.sampled_from(["", " ", "-"]),
)
ibans = st.sampled_from(["DE", "GB", "FR", "NL", "ES", "IT", "CH", "NO", "PL"]).flatmap(
    lambda c: st.builds(
        lambda bban, spaced: _spaced(_iban(c, bban)) if spaced else _iban(c, bban),
        st.text(string.digits, min_size=IBAN_LENGTHS[c] - 4, max_size=IBAN_LENGTHS[c] - 4),
        st.booleans(),
    )
)
phones = st.one_of(
    st.builds(
        lambda cc, rest: f"+{cc} {rest[:3]} {rest[3:6]} {rest[6:]}",
        st.integers(1, 99),
        st.text(string.digits, min_size=7, max_size=10),
    ),
    st.builds(
        lambda a, e, n: f"({a}) {e}-{n}",
        st.integers(200, 999),
        st.integers(200, 999),
        st.text(string.digits, min_size=4, max_size=4),
    ),
)
ipv4s = st.ip_addresses(v=4).map(str)
# Addresses written with fewer than four hex digits ("100::") are not caught, on purpose.
ipv6s = (
    st.integers(1, 2**128 - 1)
    .map(lambda n: ipaddress.IPv6Address(n))
    .filter(lambda a: not a.is_loopback and sum(c.isalnum() for c in a.compressed) >= 4)
    .map(lambda a: a.compressed)
)
values = st.one_of(emails, cards, ibans, phones, ipv4s, ipv6s)
# Filler words that say nothing: "order 0123456789" or "version 1.2.3.4" is by
# design not a phone number or an address, so the words that say so are left out.
_CONTEXT = _PHONE_NOT_AFTER | _IPV4_NOT_AFTER
words = st.text(string.ascii_letters, min_size=1, max_size=10).filter(
    lambda w: w.lower() not in _CONTEXT
)


def _group(digits: str, sep: str) -> str:
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)) if sep else digits


def _spaced(compact: str) -> str:
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Messages of words and seeded values; two values always have a word or a
    comma between them (numbers one space apart may read as one number)."""
    pool = draw(st.lists(values, min_size=1, max_size=4))
    texts = []
    for _ in range(draw(st.integers(1, 4))):
        picks = draw(st.lists(st.one_of(words, st.sampled_from(pool)), min_size=1, max_size=8))
        parts: list[str] = []
        for pick in picks:
            if parts and pick in pool and parts[-1] in pool:
                parts.append(draw(st.sampled_from([",", "and", "or"])))
            parts.append(pick)
        texts.append(" ".join(parts) + draw(st.sampled_from(["", ".", "?", "!"])))
    return texts, pool


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_seeded_values_never_survive_and_a_second_pass_changes_nothing(
    conversation: tuple[list[str], list[str]],
) -> None:
    texts, seeded = conversation
    first = DEFAULT.redact(texts)
    for value in seeded:
        for text in first.texts:
            assert value not in text
    second = DEFAULT.redact(list(first.texts))
    assert second.texts == first.texts
    assert second.total == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_each_value_keeps_one_placeholder_and_each_placeholder_one_value(
    seeded: list[str],
) -> None:
    texts = [f"first {v} then" for v in seeded] + [f"again {v}" for v in reversed(seeded)]
    result = DEFAULT.redact(texts)
    seen: dict[str, str] = {}
    for text, findings in zip(texts, result.findings, strict=True):
        assert len(findings) == 1, text
        value = text[findings[0].start : findings[0].end]
        assert seen.setdefault(value, findings[0].placeholder) == findings[0].placeholder
    for a, b in itertools.combinations(seen, 2):
        assert (seen[a] == seen[b]) == _same_value(a, b), (a, b)


def _same_value(a: str, b: str) -> bool:
    """The documented sameness: spelling aside, and a phone number's national
    form is its international one without the country code."""
    if _alnum(a) == _alnum(b):
        return True
    if b.startswith("+"):
        a, b = b, a
    if a.startswith("+") and b.startswith("("):
        return _alnum(b) in {_alnum(a)[k:] for k in (1, 2, 3)}
    return False


def _alnum(value: str) -> str:
    return "".join(c for c in value.casefold() if c.isalnum())


# ---- named entities (optional extra) ----------------------------------------------


def test_named_entities_need_the_extra_and_a_model() -> None:
    try:
        import presidio_analyzer  # noqa: F401
    except ImportError:
        with pytest.raises(RedactionConfigError, match=r"pip install 'labelsync\[ner\]'"):
            build_redactor("person")
        return
    with pytest.raises(RedactionConfigError) as info:
        build_redactor("ner", ner_model="no_such_model_xyz")
    assert "person, location, organization need the spaCy model 'no_such_model_xyz'" in str(
        info.value
    )
    assert "python -m spacy download no_such_model_xyz" in str(info.value)


def test_named_entities_through_presidio_on_a_small_rule_model(tmp_path: Path) -> None:
    pytest.importorskip("presidio_analyzer")
    spacy = pytest.importorskip("spacy")
    # A real spaCy pipeline, built here: an entity ruler stands in for a
    # trained model (none can be downloaded on CI), so Presidio, the model
    # loading and the mapping to placeholders all run for real.
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]},
            {"label": "PERSON", "pattern": [{"LOWER": "ada"}]},
            {"label": "GPE", "pattern": "Lyon"},
            {"label": "ORG", "pattern": [{"LOWER": "acme"}, {"LOWER": "robotics"}]},
        ]
    )
    nlp.to_disk(tmp_path / "model")
    redactor = build_redactor("email,person,location", ner_model=str(tmp_path / "model"))
    assert redactor.detector_names == ("email", "person", "location")
    result = redactor.redact(
        ["Ada Lovelace from Acme Robotics in Lyon, ada@example.com", "ada lovelace again"]
    )
    assert result.texts == (
        "<PERSON_1> from Acme Robotics in <LOCATION_1>, <EMAIL_1>",
        "<PERSON_1> again",
    )
    assert dict(result.counts) == {"person": 2, "location": 1, "email": 1}
    assert "ner" not in build_redactor("default").detector_names
