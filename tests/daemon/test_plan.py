"""The pure decision: skip, wait, new version or quarantine."""

import json

from hypothesis import given
from hypothesis import strategies as st

from labelsync.contract import InvalidConversation, parse
from labelsync.plan import NewVersion, Quarantine, Skip, Wait, decide, plan


def conv(thread: str, *turns: str):
    messages = []
    for t in turns:
        messages += [{"role": "user", "content": t}, {"role": "assistant", "content": t.upper()}]
    return parse(json.dumps({"thread_id": thread, "messages": messages}).encode(), "f.json")


def test_decision_table():
    two = conv("a", "q1", "q2")
    one = conv("a", "q1")
    cases = [
        (two, {}, 2, NewVersion(1)),
        (two, {two.sync_key: 1}, 2, Skip("same content as version 1")),
        (two, {"other": 1}, 2, NewVersion(2)),
        (two, {"x": 1, "y": 3}, 2, NewVersion(4)),
        (one, {}, 2, Wait("1 of 2 user turns (LABELSYNC_MIN_TURNS)")),
        (one, {}, 1, NewVersion(1)),
        (InvalidConversation("not valid JSON"), {}, 2, Quarantine("not valid JSON")),
    ]
    for parsed, sent, min_turns, expected in cases:
        assert decide(parsed, sent, min_turns) == expected


def test_plan_numbers_versions_within_a_batch_and_skips_repeats():
    v1, v2 = conv("a", "q1", "q2"), conv("a", "q1", "q2", "q3")
    items = [("f1", v1), ("f2", v1), ("f3", v2), ("g", conv("b", "x", "y"))]
    decisions = [d for _, d in plan(items, {}, 2)]
    assert decisions == [
        NewVersion(1),
        Skip("same content as version 1"),
        NewVersion(2),
        NewVersion(1),
    ]


@given(
    st.lists(
        st.lists(st.sampled_from(["q1", "q2", "q3"]), min_size=2, max_size=4),
        min_size=1,
        max_size=12,
    )
)
def test_a_second_plan_over_the_same_files_sends_nothing(contents):
    """vdirsyncer's property: syncing what was just synced is a no-op."""
    items = [(i, conv("t", *turns)) for i, turns in enumerate(contents)]
    sent: dict[str, dict[str, int]] = {}
    for _, decision in plan(items, sent, 2):
        assert not isinstance(decision, (Wait, Quarantine))
    for (_, c), (_, d) in zip(items, plan(items, {}, 2), strict=True):
        if isinstance(d, NewVersion):
            sent.setdefault("t", {})[c.sync_key] = d.version
    versions = sorted(sent.get("t", {}).values())
    assert versions == list(range(1, len(set(c.sync_key for _, c in items)) + 1))
    assert all(isinstance(d, Skip) for _, d in plan(items, sent, 2))
