"""Untrusted input: whatever JSON arrives, a reader says why it cannot read it, or reads it.

Only two outcomes are allowed: `InvalidConversation` with a one-line reason, or
a `Conversation` whose messages are strings. Never a KeyError or TypeError:
the engine would quarantine the entry anyway, but with a reason no bot author
can act on. Two sources of input: arbitrary JSON, and the fixtures with parts
of them replaced by arbitrary JSON (which reaches deep into each reader).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelsync import readers
from labelsync.contract import Conversation, InvalidConversation
from labelsync.readers import events
from labelsync.readers.base import Options
from tests.daemon.readers.reading import FIXTURES, fixture_names

SETTINGS = settings(
    max_examples=400,
    deadline=None,  # a shared 2-core machine: time is not what is tested here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same cases on every run: a failure is reproducible
)


def _documents() -> list[Any]:
    """Every JSON value the engine hands to a reader: a file, an element, a line."""
    found: list[Any] = []
    for name in fixture_names():
        text = (FIXTURES / name).read_text(encoding="utf-8")
        if name.endswith(".jsonl"):
            found += [json.loads(line) for line in text.splitlines() if line.strip()]
            continue
        value = json.loads(text)
        many = isinstance(value, list) and not readers.is_message_list(value)
        found += value if many else [value]
    return found


DOCUMENTS = _documents()


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


# Keys the readers look for, so that random objects reach their code paths.
KEYS = sorted(set(_keys(DOCUMENTS)))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["user", "assistant", "model", "tool", "text", "image", "tool_use"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=16,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A fixture document with one to three of its values replaced (or keys removed)."""
    doc = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            return draw(JSON)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return doc


def _check(doc: Any) -> None:
    try:
        conversation = readers.read(doc, Options(), many=True)
    except InvalidConversation as invalid:
        assert isinstance(invalid.reason, str) and invalid.reason.strip()
        assert "\n" not in invalid.reason
    else:
        assert isinstance(conversation, Conversation)
        assert isinstance(conversation.thread_id, str) and conversation.thread_id
        assert conversation.messages
        for message in conversation.messages:
            assert isinstance(message.role, str) and isinstance(message.content, str)
        assert all(isinstance(w, str) for w in conversation.warnings)
    if isinstance(doc, dict):
        _check_event(doc)


def _check_event(doc: dict[str, Any]) -> None:
    """The tailer asks every line whether it is one event, then for its messages."""
    if not events.is_event(doc, Options()):
        return
    events.conversation_of(doc)
    try:
        found = events.event_messages(doc, "line 1", Options())
    except InvalidConversation as invalid:
        assert "\n" not in invalid.reason
    else:
        assert all(isinstance(m.content, str) and isinstance(m.role, str) for m in found)


@SETTINGS
@given(JSON)
def test_arbitrary_json_is_read_or_refused_with_a_reason(doc: Any) -> None:
    _check(doc)


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), JSON, min_size=1, max_size=6))
def test_objects_with_known_keys_are_read_or_refused_with_a_reason(doc: dict[str, Any]) -> None:
    _check(doc)


@settings(SETTINGS, max_examples=1500)
@given(mutated())
def test_damaged_fixtures_are_read_or_refused_with_a_reason(doc: Any) -> None:
    _check(doc)
