"""Production rules: the sample, always-send rules and routing, decided without IO."""

from __future__ import annotations

import pytest

from labelsync import readers
from labelsync.rules import Rules, RulesError, in_sample_of, parse


def conv(thread: str, turns: int = 2, feedback: int | None = None, **extra: object):
    messages = []
    for t in range(turns):
        messages += [{"role": "user", "content": f"q{t}"}, {"role": "assistant", "content": "a"}]
    if feedback is not None:
        messages[-1]["feedback"] = {"score": feedback}
    return readers.read({"thread_id": thread, "messages": messages, **extra}, file_name="f.json")


def test_the_sample_is_a_stable_share_that_only_grows_with_the_rate():
    ids = [f"conversation-{i}" for i in range(20_000)]
    at_10 = {i for i in ids if in_sample_of(i, 0.1)}
    at_30 = {i for i in ids if in_sample_of(i, 0.3)}
    assert 1800 < len(at_10) < 2200  # about 10 %
    assert at_10 <= at_30  # raising the rate only adds conversations
    assert at_10 == {i for i in ids if in_sample_of(i, 0.1)}  # the same every time
    assert all(in_sample_of(i, 1) for i in ids[:10]) and not any(in_sample_of(i, 0) for i in ids)


def test_always_send_rules_override_the_rate_and_the_first_routing_rule_wins():
    rules = parse(
        [
            {"name": "unhappy", "when": {"feedback": "thumbs-down"}, "always_send": True},
            {"name": "billing", "when": {"metadata.app": "billing"}, "project": 12},
            {"name": "gpt", "when": {"model": "gpt-4o*"}, "project": "GPT evaluation"},
            {"name": "long", "when": {"min_turns": 5}, "always_send": True, "project": 99},
        ],
        default_project=7,
        sample_rate=0.0,
    )
    plain = rules.route(conv("a"))
    assert (plain.project, plain.sampled, plain.rule) == (7, False, None)
    assert "not in the 0% sample" in plain.reason
    unhappy = rules.route(conv("b", feedback=0))
    assert unhappy.sampled and unhappy.rule == "unhappy" and unhappy.project == 7
    billing = rules.route(conv("c", feedback=0, metadata={"app": "billing"}, model="gpt-4o-mini"))
    assert (billing.project, billing.sampled) == (12, True)  # billing comes before gpt
    assert "rule 'billing'" in billing.reason and "rule 'unhappy'" in billing.reason
    gpt = rules.route(conv("d", model="gpt-4o-mini"))
    assert (gpt.project, gpt.sampled) == ("GPT evaluation", False)
    long = rules.route(conv("e", turns=6))
    assert (long.project, long.sampled, long.rule) == (99, True, "long")
    assert rules.projects == {7, 12, "GPT evaluation", 99}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([{"name": "x", "when": {"feedback": "sad"}, "always_send": True}], "feedback must be"),
        ([{"name": "x", "when": {}, "project": 3}], "at least one condition"),
        ([{"name": "x", "when": {"min_turns": "3"}, "project": 3}], "min_turns must be"),
        ([{"name": "x", "when": {"user": "a"}}], "no effect"),
        ([{"name": "x", "when": {"user": "a"}, "project": 0}], "project id or a title"),
        ([{"name": "x", "when": {"user": "a"}, "project": 3, "colour": 1}], "unknown keys"),
    ],
)
def test_a_bad_rule_is_named_with_what_is_wrong(raw, problem):
    with pytest.raises(RulesError, match=problem) as info:
        parse(raw, 1, 1.0)
    assert "rule 'x'" in str(info.value)


def test_no_rules_send_everything_to_the_default_project():
    routing = Rules(default_project=3).route(conv("z"))
    assert (routing.project, routing.sampled, routing.rule) == (3, True, None)
