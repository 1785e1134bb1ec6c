"""Your own patterns: (name, regular expression, placeholder) from the config file.

Validated once, when settings are built: a pattern that does not compile, that
matches the empty string, or whose name or placeholder cannot be used is
reported by its name (or its position when the name itself is wrong).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labelsync.redact.base import Detector, Hit

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]{0,39}")
_KEYS = frozenset({"name", "regex", "placeholder"})


@dataclass(frozen=True)
class CustomPattern:
    """`regex` is Python's `re` syntax; a group named `value` narrows what is replaced."""

    name: str
    regex: str
    placeholder: str


def _finder(compiled: re.Pattern[str]) -> Any:
    group = "value" if "value" in compiled.groupindex else 0

    def find(text: str) -> Iterator[Hit]:
        for m in compiled.finditer(text):
            start, end = m.span(group)
            if end > start:  # an empty match, or a `value` group that did not take part
                yield Hit(start, end, m.group(group))

    return find


def compile_patterns(
    raw: Sequence[Mapping[str, Any] | CustomPattern], reserved: Collection[str]
) -> tuple[list[Detector], list[str]]:
    """The detectors, and every problem found (one line each, never a matched value)."""
    detectors: list[Detector] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw, 1):
        label = f"redaction pattern {index}"
        if isinstance(item, CustomPattern):
            fields: dict[str, Any] = {
                "name": item.name,
                "regex": item.regex,
                "placeholder": item.placeholder,
            }
        elif isinstance(item, Mapping):
            fields = dict(item)
        else:
            problems.append(
                f"{label}: expected a table with name, regex and placeholder, "
                f"got a {type(item).__name__}"
            )
            continue
        name = fields.get("name")
        if isinstance(name, str) and _NAME.fullmatch(name):
            label = f"redaction pattern {name!r}"
        else:
            problems.append(
                f"{label}: name must be 1-40 lower-case letters, digits or _, "
                f"starting with a letter (got {name!r})"
            )
            name = None
        before = len(problems)
        unknown = sorted(set(fields) - _KEYS)
        if unknown:
            problems.append(
                f"{label}: unknown key(s) {', '.join(unknown)} "
                "(a pattern has name, regex and placeholder)"
            )
        if name is not None and name in reserved:
            problems.append(f"{label}: the name is taken by a built-in detector")
        elif name is not None and name in seen:
            problems.append(f"{label}: defined twice")
        seen.add(name or "")
        placeholder = fields.get("placeholder")
        if isinstance(placeholder, str):
            placeholder = placeholder.strip().removeprefix("<").removesuffix(">")
        if not (isinstance(placeholder, str) and _PLACEHOLDER.fullmatch(placeholder)):
            problems.append(
                f"{label}: placeholder must be 1-40 upper-case letters, digits or _, "
                f"starting with a letter, like EMPLOYEE_ID (got {fields.get('placeholder')!r})"
            )
        compiled = _compile(fields.get("regex"), label, problems)
        if len(problems) == before and name is not None and compiled is not None:
            assert isinstance(placeholder, str)
            detectors.append(Detector(name, placeholder, _finder(compiled), compiled.pattern))
    return detectors, problems


def _compile(regex: Any, label: str, problems: list[str]) -> re.Pattern[str] | None:
    if not isinstance(regex, str) or not regex:
        problems.append(f"{label}: regex is missing or not a string")
        return None
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        problems.append(f"{label}: regex does not compile: {exc.msg}{where}")
        return None
    if compiled.fullmatch(""):
        problems.append(f"{label}: regex matches the empty string, so it would match everywhere")
        return None
    return compiled
