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
    # Other keys the same value has when written another way: an international
    # phone number's national forms. A hit keyed by one of them, and keyed so
    # by its own detector, shares this value's placeholder.
    also: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the key is a personal value
        return f"Hit({self.start}, {self.end})"


@dataclass(frozen=True)
class Detector:
    name: str
    placeholder: str
    find: Callable[[str], Iterator[Hit]] = field(repr=False, compare=False)
    spec: str = field(default="", repr=False)  # what else defines it (a custom regex)


# Whole words only: "id" in "a@example.id", "kernel" in "kernel.x@a.org" or
# "v" in "v2" say nothing about the number after them.
_WORD = re.compile(r"(?<![\w@.])[^\W\d_]+(?![\w@]|\.\w)|#")


def words_before(text: str, start: int, count: int) -> set[str]:
    """The last `count` words (lower case) in the 40 characters before `start`."""
    return {w.lower() for w in _WORD.findall(text[max(0, start - 40) : start])[-count:]}


def continues_a_run(text: str, start: int) -> bool:
    """Whether `start` follows a number and one separator ("... 1653 |0939"): a
    candidate there is the tail of a run too long to be read whole, not a value.
    A number glued to letters before it (DE89..., ID12) is not such a run."""
    if start < 2 or text[start - 1] not in " -\u00a0" or not text[start - 2].isdigit():
        return False
    k = start - 2
    while k > 0 and text[k - 1].isdigit():
        k -= 1
    return k == 0 or not text[k - 1].isalpha()


def side_by_side(n: int, fits: Callable[[int, int], bool], widest: int) -> list[tuple[int, int]]:
    """Read a run of n parts as values side by side: pieces (i, j) of at most
    `widest` parts that each `fits`, covering the run but for one extra part at
    either end at most (a year after a phone number, a count before a card).
    Anything else, such as a 22-digit parcel number that holds a card-shaped
    piece, gives no pieces at all."""
    memo: dict[int, list[tuple[int, int]] | None] = {}

    def cover(i: int, stop: int) -> list[tuple[int, int]] | None:
        if i == stop:
            return []
        if i not in memo:
            memo[i] = None
            for j in range(min(stop, i + widest), i, -1):
                rest = cover(j, stop) if fits(i, j) else None
                if rest is not None:
                    memo[i] = [(i, j), *rest]
                    break
        return memo[i]

    for first, stop in ((0, n), (1, n), (0, n - 1)):
        memo.clear()
        if stop > first and (found := cover(first, stop)):
            return found
    return []
