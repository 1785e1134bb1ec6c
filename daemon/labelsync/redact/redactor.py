"""One conversation's texts in, the same texts with typed placeholders out.

The redactor holds only what was configured (detectors in priority order, an
optional named-entity model); everything learnt about a conversation (which
value got which number) lives in local variables of one `redact()` call, so
one redactor serves any number of threads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from labelsync.redact.base import Detector, Hit

if TYPE_CHECKING:
    from labelsync.redact.ner import NamedEntities


@dataclass(frozen=True)
class Finding:
    """Where one value was, in the original message, and what replaced it (no value)."""

    start: int
    end: int
    detector: str
    placeholder: str  # "<EMAIL_1>"


@dataclass(frozen=True)
class Redaction:
    texts: tuple[str, ...]
    # Occurrences replaced per detector name; detectors that found nothing are absent.
    counts: Mapping[str, int]
    # Per message, in order; offsets are into the text that was passed in.
    findings: tuple[tuple[Finding, ...], ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Redactor:
    def __init__(self, detectors: Sequence[Detector] = (), ner: NamedEntities | None = None):
        self._detectors = tuple(detectors)
        self._ner = ner
        every = self._detectors + (ner.detectors if ner else ())
        self.detector_names: tuple[str, ...] = tuple(d.name for d in every)
        placeholders = sorted({d.placeholder for d in every}, key=lambda p: (-len(p), p))
        # Placeholders already in a text are kept as they are (redacting twice
        # changes nothing) and numbering continues after the highest one seen.
        self._existing = (
            re.compile(r"<(" + "|".join(placeholders) + r")_([1-9]\d{0,5})>")
            if placeholders
            else None
        )
        spec = [[d.name, d.placeholder, d.spec] for d in every]
        if ner:
            spec.append(["ner-model", ner.model, ""])
        self.config_id = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]

    @property
    def enabled(self) -> bool:
        return bool(self.detector_names)

    def __repr__(self) -> str:
        return f"Redactor({', '.join(self.detector_names) or 'off'})"

    def patterns(self, leave: Collection[str] = ()) -> Redactor:
        """The same pattern detectors, without the named-entity model or those named."""
        return Redactor([d for d in self._detectors if d.name not in leave])

    def redact(self, texts: Sequence[str]) -> Redaction:
        """Redact one conversation's texts, in order; the same value gets the same placeholder."""
        if isinstance(texts, str):
            raise TypeError("redact() takes the list of a conversation's texts, not one str")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, not a str")
        if not self.enabled:
            return Redaction(tuple(texts), MappingProxyType({}), tuple(() for _ in texts))

        numbering = _Numbering()
        kept = [list(self._placeholders_in(text, numbering.last)) for text in texts]
        counts: Counter[str] = Counter()
        out: list[str] = []
        findings: list[tuple[Finding, ...]] = []
        for text, protected in zip(texts, kept, strict=True):
            pieces: list[str] = []
            found: list[Finding] = []
            at = 0
            for det, hit in self._select(text, protected):
                placeholder = f"<{det.placeholder}_{numbering.number(det.placeholder, hit)}>"
                pieces += [text[at : hit.start], placeholder]
                found.append(Finding(hit.start, hit.end, det.name, placeholder))
                counts[det.name] += 1
                at = hit.end
            pieces.append(text[at:])
            out.append("".join(pieces))
            findings.append(tuple(found))
        return Redaction(tuple(out), MappingProxyType(dict(counts)), tuple(findings))

    def _placeholders_in(self, text: str, last: dict[str, int]) -> Iterator[tuple[int, int]]:
        if self._existing is None or "<" not in text:
            return
        for m in self._existing.finditer(text):
            last[m.group(1)] = max(last.get(m.group(1), 0), int(m.group(2)))
            yield m.start(), m.end()

    def _select(self, text: str, protected: list[tuple[int, int]]) -> list[tuple[Detector, Hit]]:
        """Every detector's hits; where two overlap, the higher-priority detector's wins."""
        taken = list(protected)
        chosen: list[tuple[Detector, Hit]] = []
        for det, hit in self._hits(text):
            if hit.end <= hit.start:
                continue
            if any(hit.start < end and start < hit.end for start, end in taken):
                continue
            taken.append((hit.start, hit.end))
            chosen.append((det, hit))
        chosen.sort(key=lambda pair: pair[1].start)
        return chosen

    def _hits(self, text: str) -> Iterator[tuple[Detector, Hit]]:
        for det in self._detectors:
            for hit in det.find(text):
                yield det, hit
        if self._ner is not None:
            yield from self._ner.find_all(text)


class _Numbering:
    """Which value got which number, for one conversation."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # the highest number given per placeholder
        self._own: dict[tuple[str, str], int] = {}  # by each value's own key
        self._also: dict[tuple[str, str], int] = {}  # by the other ways a value is written

    def number(self, placeholder: str, hit: Hit) -> int:
        number = self._own.get((placeholder, hit.key))
        if number is None and hit.also:
            # An international number after its national form was seen.
            number = next(
                (self._own[(placeholder, a)] for a in hit.also if (placeholder, a) in self._own),
                None,
            )
        elif number is None:
            # A national number after its international form was seen. Never
            # matched against another value's other forms: +1 555 0100 and
            # +2 555 0100 stay two numbers.
            number = self._also.get((placeholder, hit.key))
        if number is None:
            number = self.last[placeholder] = self.last.get(placeholder, 0) + 1
        self._own.setdefault((placeholder, hit.key), number)
        for other in hit.also:
            self._also.setdefault((placeholder, other), number)
        return number
