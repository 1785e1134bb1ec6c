"""One chunk of conversations: decide, hand to Label Studio, record.

    route (rules: project, sample) -> plan (versions, pure) -> caps -> outbox
    -> import -> record -> feedback updates, retire superseded versions

Exactly once: a version is put in the outbox (committed) before its import is
sent, and recorded as sent (committed) only after Label Studio answered with
its task id; an outbox row found later is resolved by asking Label Studio
for its sync key. Versions are per (conversation, project).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from labelsync.contract import Conversation
from labelsync.delivery import Outgoing
from labelsync.intake import FileDone, Item, Unsettle, Work
from labelsync.plan import NewVersion, Quarantine, Skip, TooShort, UpdateFeedback, Wait, plan
from labelsync.rules import Routing
from labelsync.state import ConversationRecord, Pending, State, VersionRecord
from labelsync.targets import Target, Targets

log = logging.getLogger(__name__)

Previous = list[tuple[int, str]]  # (version, sync key) of the versions before one


@dataclass
class Out:
    """A conversation to send as a new version."""

    work: Work
    version: int
    previous: Previous
    rule: str | None


@dataclass(frozen=True)
class Caps:
    """At most this many new tasks per project an hour / a day; 0: no cap."""

    per_hour: int = 0
    per_day: int = 0


@dataclass
class Sent:
    """What the daemon needs to know of a chunk beyond its counts."""

    unsettled: list[str]
    sent: list[tuple[str, float]]  # (file, its last change)


class Sender:
    def __init__(
        self,
        state: State,
        targets: Targets,
        min_turns: int,
        caps: Caps = Caps(),
        now: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.targets = targets
        self.min_turns = min_turns
        self.caps = caps
        self.now = now

    # -- the outbox a crash or a failed import left ---------------------------------------
    def resolve_outbox(self) -> int:
        found_all = 0
        by_project: dict[int, list[Pending]] = defaultdict(list)
        for row in self.state.pending():
            by_project[row.project_id].append(row)
        for project_id, rows in by_project.items():
            found_all += self._resolve(self.targets.get(project_id), rows)
        return found_all

    def _resolve(self, target: Target, pending: list[Pending]) -> int:
        # An import sent just before a crash may still be running in Label Studio:
        # its outcome is unknown until the request's own deadline has passed.
        delay = max(p.sent_at for p in pending) + target.ls.timeout_s - time.time()
        if delay > 0:
            log.info("waiting %.0f s for imports interrupted by a crash to settle", delay)
            target.delivery.pause(delay)
        found = target.delivery.resolve([p.sync_key for p in pending])
        with self.state.transaction() as tx:
            tx.add_versions(
                VersionRecord(
                    p.project_id,
                    p.thread_id,
                    p.version,
                    p.sync_key,
                    found[p.sync_key],
                    p.source_file,
                )
                for p in pending
                if p.sync_key in found
            )
            tx.drop_outbox((p.project_id, p.sync_key) for p in pending)
        target.project.expect(len(found))
        log.info(
            "outbox resolved: %d imported before the interruption, %d to send again",
            len(found),
            len(pending) - len(found),
        )
        return len(found)

    # -- a chunk ----------------------------------------------------------------------------
    def handle(
        self,
        chunk: list[Item],
        tally: Counter[str],
        dry_run: bool,
        while_importing: Callable[[], None],
    ) -> Sent:
        works = [item for item in chunk if isinstance(item, Work)]
        done = [item for item in chunk if isinstance(item, FileDone)]
        out = Sent([str(i.path) for i in chunk if isinstance(i, Unsettle)], [])
        tally["changing"] += len(out.unsettled)
        for item in done:
            if item.record.status in ("quarantined", "unreadable"):
                tally["quarantined"] += 1
                log.warning("quarantined %s: %s", item.record.path, item.record.reason)
            elif item.record.status == "skipped":
                tally["skipped"] += 1
                log.info("skipped %s: %s", item.record.path, item.record.reason)
        tally["conversations"] += len(works)
        for work in works:
            for detector, n in work.redacted.items():
                tally[f"redacted:{detector}"] += n

        routed: dict[int, list[tuple[Work, Routing | None]]] = defaultdict(list)
        default = self.targets.default.project.id
        for work in works:
            if isinstance(work.parsed, Conversation):
                routing = self.targets.rules.route(work.parsed)
                routed[self.targets.project_id(routing.project)].append((work, routing))
            else:
                routed[default].append((work, None))
        records: list[ConversationRecord] = []
        by_project: dict[int, list[Out]] = {}
        feedback: dict[int, list[tuple[VersionRecord, Conversation, Conversation]]] = {}
        for project_id, group in routed.items():
            outgoing, updates = self._decide(project_id, group, records, tally)
            by_project[project_id], feedback[project_id] = outgoing, updates
        if dry_run:
            for outgoing in by_project.values():
                for o in outgoing:
                    tally["new_tasks" if o.version == 1 else "new_versions"] += 1
            return out
        # Files are recorded once, with the last project's delivery (after all imports).
        last = list(by_project)[-1] if by_project else default
        for project_id, outgoing in by_project.items():
            target = self.targets.get(project_id)
            if outgoing:
                # Another labelsync on this project? Learn what it sent before sending.
                learnt = target.project.learn()
                if learnt:
                    tally["recovered"] += learnt
                    outgoing = self._replan(project_id, outgoing, records, tally)
            self._deliver(
                target, outgoing, records if project_id == last else [],
                done if project_id == last else [], works if project_id == last else [],
                tally, out, while_importing,
            )  # fmt: skip
            if feedback[project_id]:
                target.project.update_feedback(feedback[project_id])
            if any(o.version > 1 for o in outgoing):
                tally["retired"] += target.project.tidy().retired
        if not by_project:
            self._deliver(self.targets.default, [], records, done, works, tally, out, lambda: None)
        return out

    def _decide(
        self,
        project_id: int,
        group: list[tuple[Work, Routing | None]],
        records: list[ConversationRecord],
        tally: Counter[str],
    ) -> tuple[list[Out], list[tuple[VersionRecord, Conversation, Conversation]]]:
        routing = {id(work): r for work, r in group}
        known = self.state.versions_of(
            project_id,
            (w.parsed.thread_id for w, _ in group if isinstance(w.parsed, Conversation)),
        )
        before = {t: [(v.version, v.sync_key) for v in vs] for t, vs in known.items()}
        room = self._room(project_id)
        outgoing: list[Out] = []
        updates: list[tuple[VersionRecord, Conversation, Conversation]] = []
        works = [work for work, _ in group]
        for work, decision in plan(
            ((w, w.parsed, w.settled) for w in works), known, self.min_turns
        ):
            route = routing[id(work)]
            rule = route.rule if route is not None else None
            if rule is not None:
                tally[f"rule:{rule}"] += 1
            if isinstance(decision, NewVersion):
                assert isinstance(work.parsed, Conversation) and route is not None
                if not route.sampled:
                    tally["not_sampled"] += 1
                    records.append(
                        self._record(work, project_id, "not_sampled", route.reason, rule)
                    )
                    continue
                if room is not None and room <= 0:
                    tally["deferred"] += 1
                    reason = "over the cap of new tasks (LABELSYNC_CAP_PER_HOUR/DAY): sent later"
                    records.append(self._record(work, project_id, "deferred", reason, rule))
                    continue
                if room is not None:
                    room -= 1
                earlier = before.setdefault(work.parsed.thread_id, [])
                outgoing.append(Out(work, decision.version, list(earlier), rule))
                earlier.append((decision.version, work.parsed.sync_key))
                continue
            if isinstance(decision, UpdateFeedback) and isinstance(work.parsed, Conversation):
                updates.append((decision.version, work.parsed, work.shown or work.parsed))
            status, reason = _status(decision)
            tally[{"synced": "duplicates"}.get(status, status)] += 1
            if isinstance(decision, UpdateFeedback):
                tally["duplicates"] -= 1
                tally["feedback"] += 1
            if isinstance(decision, Quarantine):
                where = f" {work.position}" if work.position else ""
                log.warning("quarantined %s%s: %s", work.path, where, reason)
            records.append(self._record(work, project_id, status, reason, rule))
        return outgoing, updates

    def _room(self, project_id: int) -> int | None:
        """How many new tasks the caps still allow this project now; None: no cap."""
        now = self.now()
        rooms = []
        if self.caps.per_hour:
            rooms.append(self.caps.per_hour - self.state.sent_since(project_id, now - 3600))
        if self.caps.per_day:
            rooms.append(self.caps.per_day - self.state.sent_since(project_id, now - 86400))
        return min(rooms) if rooms else None

    def _replan(
        self,
        project_id: int,
        outgoing: list[Out],
        records: list[ConversationRecord],
        tally: Counter[str],
    ) -> list[Out]:
        """Decide again what was to be sent, now that versions someone else sent are known."""
        rules = {id(o.work): o.rule for o in outgoing}
        works = [o.work for o in outgoing]
        known = self.state.versions_of(
            project_id, (w.parsed.thread_id for w in works if isinstance(w.parsed, Conversation))
        )
        before = {t: [(v.version, v.sync_key) for v in vs] for t, vs in known.items()}
        again: list[Out] = []
        for work, decision in plan(
            ((w, w.parsed, w.settled) for w in works), known, self.min_turns
        ):
            assert isinstance(work.parsed, Conversation)
            rule = rules[id(work)]
            if isinstance(decision, NewVersion):
                earlier = before.setdefault(work.parsed.thread_id, [])
                again.append(Out(work, decision.version, list(earlier), rule))
                earlier.append((decision.version, work.parsed.sync_key))
            else:
                tally["duplicates"] += 1
                reason = getattr(decision, "reason", "sent by another labelsync")
                records.append(self._record(work, project_id, "synced", reason, rule))
        return again

    def _record(
        self, work: Work, project_id: int, status: str, reason: str | None, rule: str | None
    ) -> ConversationRecord:
        parsed = work.parsed
        thread = parsed.thread_id if isinstance(parsed, Conversation) else None
        key = parsed.sync_key if isinstance(parsed, Conversation) else None
        return ConversationRecord(
            work.path, work.key, thread, status, reason, work.position, key, project_id, rule
        )

    def _deliver(
        self,
        target: Target,
        outgoing: list[Out],
        records: list[ConversationRecord],
        done: list[FileDone],
        works: list[Work],
        tally: Counter[str],
        out: Sent,
        while_importing: Callable[[], None],
    ) -> None:
        project_id = target.project.id
        now = time.time()
        batch: list[tuple[Out, Pending, Outgoing]] = []
        for o in outgoing:
            conversation, draft = o.work.parsed, o.work.draft
            assert isinstance(conversation, Conversation) and draft is not None
            pending = Pending(
                project_id, conversation.sync_key, conversation.thread_id, o.version,
                draft.data["source_file"], now,
            )  # fmt: skip
            task = draft.numbered(o.version, o.previous)
            batch.append((o, pending, Outgoing(conversation.sync_key, task)))
        with self.state.transaction() as tx:
            tx.put_conversations(records)
            tx.put_outbox(pending for _, pending, _ in batch)

        delivered = None
        if batch:
            started = time.monotonic()
            while_importing()
            delivered = target.delivery.send([o for _, _, o in batch])
            tally["recovered"] += delivered.found_existing
            target.project.expect(len(delivered.task_ids))
            log.debug(
                "imported %d tasks in %.2f s", len(delivered.task_ids), time.monotonic() - started
            )

        versions, sent = [], []
        for o, pending, _ in batch:
            work = o.work
            assert delivered is not None and isinstance(work.parsed, Conversation)
            key = pending.sync_key
            if key in delivered.task_ids:
                task_id = delivered.task_ids[key]
                versions.append(
                    VersionRecord(
                        project_id, pending.thread_id, pending.version, key, task_id,
                        pending.source_file, work.parsed.feedback_key,
                    )
                )  # fmt: skip
                reason = f"version {pending.version}, task {task_id}"
                sent.append(self._record(work, project_id, "synced", reason, o.rule))
                tally["new_tasks" if pending.version == 1 else "new_versions"] += 1
                out.sent.append((work.path, work.changed_at))
                log.info(
                    "sent %s as version %d (task %d) from %s",
                    pending.thread_id, pending.version, task_id, pending.source_file,
                )  # fmt: skip
            else:
                why = delivered.rejected.get(key, "not imported")
                reason = f"Label Studio rejected it: {why}"
                sent.append(self._record(work, project_id, "rejected", reason, o.rule))
                tally["quarantined"] += 1
                log.warning("rejected by Label Studio %s: %s", work.path, why)
        with self.state.transaction() as tx:
            tx.add_versions(versions)
            tx.put_conversations(sent)
            tx.put_files(item.record for item in done)
            for item in done:
                if item.keys is not None:
                    tx.keep_only_conversations(item.record.path, item.keys)
            tx.close_tailed(w.key for w in works if w.tailed)
            tx.drop_outbox((p.project_id, p.sync_key) for _, p, _ in batch)


def _status(decision: object) -> tuple[str, str]:
    if isinstance(decision, Skip):
        return "synced", decision.reason
    if isinstance(decision, UpdateFeedback):
        return "synced", f"same content as version {decision.version.version}"
    if isinstance(decision, Wait):
        return "waiting", decision.reason
    if isinstance(decision, TooShort):
        return "too_short", decision.reason
    assert isinstance(decision, Quarantine)
    return "quarantined", decision.reason
