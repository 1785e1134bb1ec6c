"""What every detector is made of: hits, the detector itself, the words before a value."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple


class Hit(NamedTuple):
    start: int
    end: int
    key: str  # the normalised value: used for numbering, never shown

    def __repr__(self) -> str:  # the key is a personal value
        return f"Hit({self.start}, {self.end})"


@dataclass(frozen=True)
class Detector:
    name: str
    placeholder: str
    find: Callable[[str], Iterator[Hit]] = field(repr=False, compare=False)
    spec: str = field(default="", repr=False)  # what else defines it (a custom regex)


_WORD = re.compile(r"[^\W\d_]+|#")


def words_before(text: str, start: int, count: int) -> set[str]:
    """The last `count` words (lower case) in the 40 characters before `start`."""
    return {w.lower() for w in _WORD.findall(text[max(0, start - 40) : start])[-count:]}
