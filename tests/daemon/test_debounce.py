"""The debouncer: table tests for each clock, and a model-based property test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelsync.debounce import Debouncer

QUIET, MAX_WAIT, SETTLE = 10.0, 60.0, 1.0


def debouncer() -> Debouncer[str]:
    return Debouncer(quiet_s=QUIET, max_wait_s=MAX_WAIT, settle_s=SETTLE)


# Each row: the touches (time, path, ended), then when we ask, and what is due.
@pytest.mark.parametrize(
    ("touches", "asked_at", "expected"),
    [
        pytest.param([(0, "a", False)], 9.9, [], id="not before the quiet period"),
        pytest.param([(0, "a", False)], 10, ["a"], id="after the quiet period"),
        pytest.param(
            [(0, "a", False), (5, "a", False)], 14.9, [], id="each change restarts the quiet clock"
        ),
        pytest.param([(0, "a", False), (5, "a", False)], 15, ["a"], id="quiet after last change"),
        pytest.param(
            [(t, "a", False) for t in range(0, 60, 5)],
            60,
            ["a"],
            id="a chat that never pauses is due at max_wait",
        ),
        pytest.param(
            [(t, "a", False) for t in range(0, 60, 5)],
            59.9,
            [],
            id="but not before max_wait",
        ),
        pytest.param([(0, "a", True)], 1, ["a"], id="an ended chat only settles"),
        pytest.param([(0, "a", False), (2, "a", True)], 3, ["a"], id="ended after some writes"),
        pytest.param(
            [(0, "a", True), (0.5, "a", False)],
            1.5,
            ["a"],
            id="the trailing hint of the ending write keeps the end mark",
        ),
        pytest.param(
            [(0, "b", False), (3, "a", False), (1, "c", True)],
            100,
            ["c", "b", "a"],
            id="oldest deadline first",
        ),
        pytest.param(
            [(0, "a", False), (0, "b", False), (8, "b", False)],
            10,
            ["a"],
            id="files settle independently",
        ),
    ],
)
def test_when_files_are_due(
    touches: list[tuple[float, str, bool]], asked_at: float, expected: list[str]
) -> None:
    d = debouncer()
    for now, path, ended in touches:
        d.touch(path, now, ended=ended)

    assert d.due(asked_at) == expected


def test_a_file_is_due_once_per_burst() -> None:
    d = debouncer()
    d.touch("a", 0)

    assert d.due(10) == ["a"]
    assert d.due(1000) == []
    assert len(d) == 0

    d.touch("a", 1001)  # the conversation grew: a new burst
    assert d.due(1011) == ["a"]


def test_a_deleted_file_is_never_due() -> None:
    d = debouncer()
    d.touch("a", 0)
    d.touch("b", 0)
    d.forget("a")

    assert d.due(1000) == ["b"]


def test_backlog_and_next_deadline_tell_the_loop_how_long_to_sleep() -> None:
    d = debouncer()
    assert (len(d), d.next_deadline()) == (0, None)

    d.touch("a", 0)
    d.touch("b", 4)
    assert (len(d), d.next_deadline()) == (2, 10)

    d.touch("a", 6)  # a's deadline moves past b's
    assert d.next_deadline() == 14
    d.touch("a", 7, ended=True)  # and comes back before it
    assert d.next_deadline() == 8

    d.forget("a")
    assert (len(d), d.next_deadline()) == (1, 14)


def test_a_file_rewritten_thousands_of_times_keeps_memory_bounded() -> None:
    d = debouncer()
    for i in range(10_000):
        d.touch("hot", i / 1000)

    assert len(d) == 1
    assert len(d._heap) < 100  # stale entries are compacted away
    assert d.due(100) == ["hot"]


@pytest.mark.parametrize(
    ("quiet_s", "max_wait_s", "settle_s"),
    [(0, 60, 0), (10, 5, 1), (10, 60, -1), (10, 60, 11)],
)
def test_nonsense_settings_are_refused(quiet_s: float, max_wait_s: float, settle_s: float) -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet_s=quiet_s, max_wait_s=max_wait_s, settle_s=settle_s)


# --- property test: the debouncer against a plain model of its promise ---------

PATHS = ["a.json", "b.json", "c.json"]


@dataclass
class Pending:
    first: float
    last: float
    ended: bool


steps = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), st.sampled_from(PATHS), st.booleans()),
        st.tuples(st.just("forget"), st.sampled_from(PATHS), st.just(False)),
        st.tuples(st.just("due"), st.just(""), st.just(False)),
    ).flatmap(
        lambda step: st.tuples(st.just(step), st.floats(min_value=0, max_value=30, allow_nan=False))
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_every_burst_is_due_exactly_once_and_never_early(
    steps: list[tuple[tuple[str, str, bool], float]],
) -> None:
    d = debouncer()
    pending: dict[str, Pending] = {}  # the model: bursts not yet due
    now = 0.0
    emitted: list[str] = []

    def check_due(at: float) -> None:
        got = d.due(at)
        emitted.extend(got)
        assert len(got) == len(set(got)), "a file came due twice in one call"
        for path in got:
            burst = pending.pop(path)  # KeyError: due without a pending burst
            quiet_enough = at - burst.last >= (SETTLE if burst.ended else QUIET)
            waited_enough = at - burst.first >= MAX_WAIT
            assert quiet_enough or waited_enough, f"{path} due early at {at}: {burst}"
        for path, burst in pending.items():  # nothing overdue is left behind
            deadline = min(burst.last + (SETTLE if burst.ended else QUIET), burst.first + MAX_WAIT)
            assert deadline > at, f"{path} overdue at {at}"
        assert len(d) == len(pending)

    for (action, path, ended), dt in steps:
        now += dt
        if action == "touch":
            d.touch(path, now, ended=ended)
            burst = pending.setdefault(path, Pending(first=now, last=now, ended=False))
            burst.last, burst.ended = now, burst.ended or ended
        elif action == "forget":
            d.forget(path)
            pending.pop(path, None)
        else:
            check_due(now)
        deadlines = [
            min(b.last + (SETTLE if b.ended else QUIET), b.first + MAX_WAIT)
            for b in pending.values()
        ]
        assert d.next_deadline() == (min(deadlines) if deadlines else None)

    # Eventually, everything still pending comes due, once.
    still_pending = set(pending)
    before = len(emitted)
    check_due(now + MAX_WAIT)
    assert set(emitted[before:]) == still_pending
    assert d.due(now + 10 * MAX_WAIT) == []
    assert d.next_deadline() is None
