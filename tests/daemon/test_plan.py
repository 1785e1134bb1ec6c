"""The pure decision: skip, update feedback, wait, too short, new version or quarantine."""

from hypothesis import given
from hypothesis import strategies as st

from labelsync import readers
from labelsync.contract import InvalidConversation
from labelsync.plan import (
    ENDED,
    FINAL,
    NewVersion,
    Quarantine,
    Skip,
    TooShort,
    UpdateFeedback,
    Wait,
    decide,
    plan,
)
from labelsync.state import VersionRecord


def conv(thread: str, *turns: str, feedback: dict | None = None):
    messages = []
    for t in turns:
        messages += [{"role": "user", "content": t}, {"role": "assistant", "content": t.upper()}]
    if feedback:
        messages[-1]["feedback"] = feedback
    return readers.read({"thread_id": thread, "messages": messages}, file_name="f.json")


def sent(c, version: int, feedback_key: str = "") -> VersionRecord:
    return VersionRecord(1, c.thread_id, version, c.sync_key, 100 + version, "f.json", feedback_key)


def test_decision_table():
    two = conv("a", "q1", "q2")
    one = conv("a", "q1")
    rated = conv("a", "q1", "q2", feedback={"score": 0, "comment": "wrong"})
    other = VersionRecord(1, "a", 1, "other", 5, "f.json")
    three = VersionRecord(1, "a", 3, "y", 6, "f.json")
    cases = [
        (two, [], 2, None, NewVersion(1)),
        (two, [sent(two, 1)], 2, None, Skip("same content as version 1")),
        (rated, [sent(two, 1)], 2, None, UpdateFeedback(sent(two, 1))),
        (rated, [sent(two, 1, rated.feedback_key)], 2, None, Skip("same content as version 1")),
        (two, [other], 2, None, NewVersion(2)),
        (two, [other, three], 2, None, NewVersion(4)),
        (one, [], 2, None, Wait("1 of 2 user turns (LABELSYNC_MIN_TURNS): sent when it grows")),
        (
            one,
            [],
            2,
            FINAL,
            TooShort(
                "1 of 2 user turns and it came from an export or a dataset "
                "(LABELSYNC_MIN_TURNS=1 would send it)"
            ),
        ),
        (one, [], 1, ENDED, NewVersion(1)),
        (InvalidConversation("not valid JSON"), [], 2, None, Quarantine("not valid JSON")),
    ]
    for parsed, versions, min_turns, settled, expected in cases:
        assert decide(parsed, versions, min_turns, settled) == expected


def test_content_sent_by_labelsync_0_1_is_recognised_by_its_old_key():
    rated = conv("a", "q1", "q2", feedback={"score": 1})
    old = VersionRecord(1, "a", 1, rated.legacy_key, 7, "f.json")
    assert decide(rated, [old], 2) == Skip("same content as version 1")


def test_plan_numbers_versions_within_a_batch_and_skips_repeats():
    v1, v2 = conv("a", "q1", "q2"), conv("a", "q1", "q2", "q3")
    items = [("f1", v1, None), ("f2", v1, None), ("f3", v2, None), ("g", conv("b", "x", "y"), None)]
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
    items = [(i, conv("t", *turns), None) for i, turns in enumerate(contents)]
    known: dict[str, list[VersionRecord]] = {}
    for (_, c, _), (_, d) in zip(items, plan(items, {}, 2), strict=True):
        assert not isinstance(d, (Wait, Quarantine))
        if isinstance(d, NewVersion):
            known.setdefault("t", []).append(sent(c, d.version))
    versions = sorted(v.version for v in known.get("t", []))
    assert versions == list(range(1, len({c.sync_key for _, c, _ in items}) + 1))
    assert all(isinstance(d, Skip) for _, d in plan(items, known, 2))
