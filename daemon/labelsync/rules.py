"""Production rules: which conversations are sent, and to which project. Pure.

A busy bot writes far more conversations than a team can rate, and not all of
them belong in one project. Three settings decide, in the TOML file given with
`--config` (or the environment, for the rate):

    sample_rate = 0.1           # LABELSYNC_SAMPLE_RATE: the share of conversations sent

    [[rules]]                   # tried in order
    name = "unhappy users"
    when = { feedback = "thumbs-down" }
    always_send = true          # whatever the sample rate

    [[rules]]
    name = "billing"
    when = { "metadata.app" = "billing" }
    project = 12                # a project id, or a title (`labelsync init-project --rules`)

The sample is decided by a hash of the conversation's id, never by chance: a
conversation's later versions follow its first decision, a rerun decides the
same, several daemons agree, and raising the rate only adds conversations.
The first rule that names a project routes there (the default is
LABEL_STUDIO_PROJECT_ID); a rule with `always_send` sends what it matches
whatever the rate. Conditions in `when` must all hold:

    "dotted.path" = value   a field of the conversation's file (metadata.app, user,
                            ...): equal, a glob ("gpt-4o*"), or a list of those
    model = "glob"          the model of the conversation or of any reply
    shape = "chatgpt-export"  the reader that understood it
    feedback = "thumbs-down" | "thumbs-up" | "any" | "none"   the chat user's thumbs
    min_turns = 5, max_turns = 1                              user turns
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labelsync.contract import Conversation
from labelsync.readers.base import dig

_SPECIAL = {"model", "shape", "feedback", "min_turns", "max_turns"}
_FEEDBACK = {"thumbs-down", "thumbs-up", "any", "none"}


class RulesError(ValueError):
    """The rules in the config file cannot be used; the message names each problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    when: Mapping[str, Any]
    project: int | str | None = None  # an id, or a title resolved at start
    always_send: bool = False

    def matches(self, conversation: Conversation) -> bool:
        return all(_holds(key, want, conversation) for key, want in self.when.items())


@dataclass(frozen=True)
class Routing:
    """What the rules say of one conversation."""

    project: int | str  # where it goes
    rule: str | None  # the rule that decided where it goes or that it is sent, if any
    sampled: bool  # in the sample, or sent anyway by an always_send rule
    reason: str  # one line, for `validate --show` and `status`


@dataclass(frozen=True)
class Rules:
    default_project: int
    sample_rate: float = 1.0
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def route(self, conversation: Conversation) -> Routing:
        project: int | str = self.default_project
        routed_by = always = None
        for rule in self.rules:
            routes = rule.project is not None and routed_by is None  # the first one routes
            sends = rule.always_send and always is None
            if not (routes or sends) or not rule.matches(conversation):
                continue
            if routes:
                project, routed_by = rule.project, rule.name  # type: ignore[assignment]
            if sends:
                always = rule.name
        in_sample = in_sample_of(conversation.thread_id, self.sample_rate)
        sampled = in_sample or always is not None
        if always is not None and not in_sample:
            reason = f"sent whatever the sample rate (rule {always!r})"
        elif in_sample:
            reason = "in the sample" if self.sample_rate < 1 else "sent"
        else:
            reason = f"not in the {self.sample_rate:.0%} sample (LABELSYNC_SAMPLE_RATE)"
        if routed_by is not None:
            reason += f"; to project {project} (rule {routed_by!r})"
        return Routing(project, routed_by or always, sampled, reason)

    @property
    def projects(self) -> set[int | str]:
        return {self.default_project} | {r.project for r in self.rules if r.project is not None}


def in_sample_of(thread_id: str, rate: float) -> bool:
    """Deterministic: the same conversation is in or out of a rate's sample everywhere."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"labelsync-sample\0{thread_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def parse(raw: Sequence[Mapping[str, Any]], default_project: int, sample_rate: float) -> Rules:
    """Rules from the config file's `[[rules]]` tables; every problem at once."""
    problems: list[str] = []
    rules: list[Rule] = []
    for index, item in enumerate(raw):
        where = f"rules[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: a table expected")
            continue
        name = str(item.get("name") or f"rule {index + 1}")
        where = f"rule {name!r}"
        unknown = set(item) - {"name", "when", "project", "always_send"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        when = item.get("when", {})
        if not isinstance(when, Mapping) or not when:
            problems.append(f"{where}: `when` must be a table of at least one condition")
            continue
        problems += [f"{where}: {p}" for p in _check(when)]
        project = item.get("project")
        if project is not None and not (
            (isinstance(project, int) and project > 0) or (isinstance(project, str) and project)
        ):
            problems.append(f"{where}: `project` must be a project id or a title")
        always = item.get("always_send", False)
        if not isinstance(always, bool):
            problems.append(f"{where}: `always_send` must be true or false")
        if project is None and not always:
            problems.append(f"{where}: it names no project and does not always send: no effect")
        rules.append(Rule(name, dict(when), project, bool(always)))
    if problems:
        raise RulesError("; ".join(problems))
    return Rules(default_project, sample_rate, tuple(rules))


def _check(when: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, want in when.items():
        if key == "feedback" and want not in _FEEDBACK:
            problems.append(f"feedback must be one of {', '.join(sorted(_FEEDBACK))}")
        elif key in ("min_turns", "max_turns") and not (
            isinstance(want, int) and not isinstance(want, bool) and want >= 0
        ):
            problems.append(f"{key} must be a whole number")
    return problems


def _holds(key: str, want: Any, conversation: Conversation) -> bool:
    if key == "min_turns":
        return bool(conversation.user_turns >= want)
    if key == "max_turns":
        return bool(conversation.user_turns <= want)
    if key == "feedback":
        scores = [m.feedback.get("score") for m in conversation.messages if m.feedback]
        return {
            "thumbs-down": 0 in scores,
            "thumbs-up": 1 in scores,
            "any": bool(scores),
            "none": not scores,
        }[want]
    if key == "model":
        models = {conversation.model} | {m.model for m in conversation.messages}
        return any(_like(model, want) for model in models if model)
    if key == "shape":
        return _like(conversation.shape, want)
    value = dig(conversation.extra, key)
    if value is None and key == "thread_id":
        value = conversation.thread_id
    return value is not None and _like(value, want)


def _like(value: Any, want: Any) -> bool:
    if isinstance(want, list):
        return any(_like(value, w) for w in want)
    if isinstance(want, str) and isinstance(value, (str, int, float)):
        return fnmatch.fnmatchcase(str(value), want)
    return bool(value == want)
