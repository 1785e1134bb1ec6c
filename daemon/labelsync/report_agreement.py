"""Agreement between annotators: Krippendorff's alpha, accumulated one unit at a time.

Label Studio Community computes none. Alpha (Krippendorff, "Computing
Krippendorff's Alpha-Reliability", 2011) takes any number of annotators per
unit and missing values, and has an ordinal form for star ratings (a 4 against
a 5 is a smaller disagreement than a 1 against a 5). A unit is a task (the
conversation's rating, "answered") or one message of a task (clarity, accuracy);
only units judged by two or more annotators count. The coincidence matrix is
summed unit by unit, so memory does not grow with the number of tasks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

_Delta = Callable[[Hashable, Hashable], float]


@dataclass
class Alpha:
    ordinal: bool
    units: int = 0
    values: int = 0
    _o: defaultdict[tuple[Hashable, Hashable], float] = field(
        default_factory=lambda: defaultdict(float)
    )

    def add(self, values: Sequence[Hashable]) -> None:
        """One unit's values, one per annotator who gave one."""
        m = len(values)
        if m < 2:
            return
        self.units += 1
        self.values += m
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    self._o[(c, k)] += 1.0 / (m - 1)

    def value(self) -> float | None:
        """Alpha, or None when it is undefined (no unit, or every value the same)."""
        totals: defaultdict[Hashable, float] = defaultdict(float)
        for (c, _), o in self._o.items():
            totals[c] += o
        n = sum(totals.values())
        if n <= 1:
            return None
        categories = sorted(totals, key=_order)
        delta = self._ordinal_delta(categories, totals) if self.ordinal else _nominal_delta
        observed = sum(o * delta(c, k) for (c, k), o in self._o.items())
        expected = sum(totals[c] * totals[k] * delta(c, k) for c in categories for k in categories)
        if expected == 0:
            return None
        return 1.0 - (n - 1) * observed / expected

    @staticmethod
    def _ordinal_delta(categories: list[Hashable], totals: dict[Hashable, float]) -> _Delta:
        rank = {c: i for i, c in enumerate(categories)}

        def delta(c: Hashable, k: Hashable) -> float:
            low, high = sorted((rank[c], rank[k]))
            between = sum(totals[categories[g]] for g in range(low, high + 1))
            return float((between - (totals[c] + totals[k]) / 2) ** 2)

        return delta


def _nominal_delta(c: Hashable, k: Hashable) -> float:
    return 0.0 if c == k else 1.0


def _order(value: Hashable) -> tuple[int, float | str]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))
