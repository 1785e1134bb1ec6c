"""One chunk of conversations: decide, hand to Label Studio, record.

    route (rules: project, sample) -> plan (versions, pure) -> caps -> claim
    -> plan again under the claim -> outbox -> import -> record (and release)
    -> feedback updates, retire superseded versions

Exactly once: a version is put in the outbox (committed) before its import is
sent, and recorded as sent (committed) only after Label Studio answered with
its task id; an outbox row found later is resolved by asking Label Studio
for its sync key. Versions are per (conversation, project).

Across daemons sharing one state (PostgreSQL), a conversation about to get a
new version is claimed first (a lease row, lease.py): a claim another daemon
holds leaves that conversation for later (`Sent.busy`: its file is not recorded
as read, so it is read and decided again), and the versions of those claimed
are read again, so a version recorded meanwhile makes this one a Skip or N+1.
The outbox's transaction checks the claims still hold; the record's releases
them. Every write after an import is repeatable, so the record is tried again
while the database is briefly away: its outcome, like any failed COMMIT's, is
unknown, and doing it twice changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from labelsync.contract import Conversation
from labelsync.delivery import Delivered, Outgoing
from labelsync.intake import FileDone, Item, Unsettle, Work
from labelsync.lease import LeaseLost, Leases, LeaseTimes
from labelsync.plan import NewVersion, Quarantine, Skip, TooShort, UpdateFeedback, Wait, plan
from labelsync.rules import Routing
from labelsync.state import (
    ConversationRecord,
    Pending,
    State,
    StateUnavailable,
    Tx,
    VersionRecord,
)
from labelsync.targets import Target, Targets

log = logging.getLogger(__name__)

Previous = list[tuple[int, str]]  # (version, sync key) of the versions before one
Updates = list[tuple[VersionRecord, Conversation, Conversation]]  # feedback changed since


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
    # Conversations another daemon holds now: left for later, their files not recorded.
    busy: list[Work] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        state: State,
        targets: Targets,
        min_turns: int,
        caps: Caps = Caps(),
        now: Callable[[], float] = time.time,
        leases: Leases | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.state = state
        self.targets = targets
        self.min_turns = min_turns
        self.caps = caps
        self.now = now
        ls = targets.default.ls
        self.leases = leases or Leases(
            state, LeaseTimes.for_imports(ls.import_timeout_s, ls.timeout_s)
        )
        self.stop = stop or threading.Event()
        self.owner = state.identity.owner

    # -- the outbox a crash or a failed import left ---------------------------------------
    def resolve_outbox(self) -> int:
        """Outbox rows this daemon may resolve (its own; on a shared state also those of
        daemons whose lease is over), each under a claim of its conversation."""
        found_all = 0
        by_project: dict[int, list[Pending]] = defaultdict(list)
        for row in self.state.resolvable():
            by_project[row.project_id].append(row)
        for project_id, rows in by_project.items():
            target = self.targets.get(project_id)
            claimed = self._claim_ids(project_id, {r.thread_id for r in rows})
            mine = [r for r in rows if r.thread_id in claimed]
            if mine:
                found_all += self._resolve(target, mine)
            if self.state.shared and claimed:
                with self.state.transaction() as tx:
                    tx.release(project_id, claimed, self.owner)
        return found_all

    def _claim_ids(self, project_id: int, thread_ids: set[str]) -> set[str]:
        started = self.leases.clock()
        claimed = self.state.claim(project_id, thread_ids, self.leases.times.lease_s)
        if self.state.shared:
            self.leases.written(started)
        return claimed

    def _resolve(self, target: Target, pending: list[Pending]) -> int:
        # An import this daemon sent just before a crash (or, on SQLite, the daemon before
        # it) may still be running in Label Studio: its outcome is unknown until the
        # request's own deadline has passed. Another daemon's row is resolvable only once
        # its lease is over, which is later than that.
        own = [p for p in pending if p.owner == self.owner or not self.state.shared]
        delay = max((p.sent_at for p in own), default=0.0) + target.ls.timeout_s - time.time()
        if own and delay > 0:
            log.info("waiting %.0f s for imports interrupted by a crash to settle", delay)
            target.delivery.pause(delay)
        found = target.delivery.resolve([p.sync_key for p in pending])
        recovered = 0
        with self.state.transaction() as tx:
            for p in pending:
                # Only the row as it was read: a daemon may have sent the same content
                # again since, under a claim of its own, and its row is its own business.
                dropped = tx.drop_outbox([(p.project_id, p.sync_key)], owner=p.owner)
                if dropped and p.sync_key in found:
                    tx.add_versions(
                        [
                            VersionRecord(
                                p.project_id,
                                p.thread_id,
                                p.version,
                                p.sync_key,
                                found[p.sync_key],
                                p.source_file,
                            )
                        ]
                    )
                    recovered += 1
            tx.add_to_meta(target.project.count_key, recovered)
        others = sorted({p.owner.split(":")[0] for p in pending if p not in own})
        log.info(
            "outbox resolved: %d imported before the interruption, %d to send again%s",
            len(found),
            len(pending) - len(found),
            f" (left by {', '.join(others)})" if others else "",
        )
        return len(found)

    # -- a chunk ----------------------------------------------------------------------------
    def handle(
        self,
        chunk: list[Item],
        tally: Counter[str],
        dry_run: bool,
        while_importing: Callable[[], None],
        busy_paths: set[str] | None = None,
    ) -> Sent:
        """busy_paths: files with a conversation left for later in this pass (this chunk's
        added): their records are not written, so they are read again."""
        busy_paths = set() if busy_paths is None else busy_paths
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
        feedback: dict[int, Updates] = {}
        for project_id, group in routed.items():
            outgoing, updates = self._decide(project_id, group, records, tally)
            by_project[project_id], feedback[project_id] = outgoing, updates
        if dry_run:
            for outgoing in by_project.values():
                for o in outgoing:
                    tally["new_tasks" if o.version == 1 else "new_versions"] += 1
            return out
        # Claims first, for every project: a file is recorded only when none of its
        # conversations was left for later, and files are recorded once, with the last
        # project's delivery (after all imports).
        claimed: dict[int, set[str]] = {}
        for project_id, outgoing in by_project.items():
            if outgoing:
                target = self.targets.get(project_id)
                # Another labelsync on this project? Learn what it sent before sending.
                learnt = target.project.learn()
                tally["recovered"] += learnt
                outgoing, claimed[project_id], more = self._claim(
                    target, outgoing, records, tally, out, replan=bool(learnt)
                )
                by_project[project_id] = outgoing
                feedback[project_id] += more
        for work in out.busy:
            if not work.tailed:
                busy_paths.add(work.path)
        done = [item for item in done if item.record.path not in busy_paths]
        busy_threads = {w.key for w in out.busy if w.tailed}
        finished = [w for w in works if not (w.tailed and w.key in busy_threads)]
        last = list(by_project)[-1] if by_project else default
        for project_id, outgoing in by_project.items():
            target = self.targets.get(project_id)
            is_last = project_id == last
            self._deliver(
                target, outgoing, claimed.get(project_id, set()),
                records if is_last else [], done if is_last else [],
                finished if is_last else [], tally, out, while_importing,
            )  # fmt: skip
            if feedback[project_id]:
                target.project.update_feedback(feedback[project_id])
            if any(o.version > 1 for o in outgoing):
                tally["retired"] += target.project.tidy().retired
        if not by_project:
            self._deliver(
                self.targets.default, [], set(), records, done, finished, tally, out, lambda: None
            )
        return out

    def _claim(
        self,
        target: Target,
        outgoing: list[Out],
        records: list[ConversationRecord],
        tally: Counter[str],
        out: Sent,
        replan: bool,
    ) -> tuple[list[Out], set[str], Updates]:
        """Claim the conversations about to get a version; decide again under the claim.

        Returns what is still to send, the conversations claimed (released when the
        chunk is recorded) and feedback updates found on deciding again. Conversations
        another daemon holds, or whose outbox row a live daemon still holds, go to
        `out.busy`. On SQLite every claim is granted at once and nothing is read again
        unless `replan` (learn() found versions someone else sent).
        """
        project_id = target.project.id
        threads = {_thread(o) for o in outgoing}
        claimed = self._claim_ids(project_id, threads)
        if self.state.shared and claimed:
            rows = self.state.outbox_of(project_id, claimed)
            held = {p.thread_id for p, live in rows if live and p.owner != self.owner}
            stale = [p for p, _ in rows if p.thread_id not in held]
            if held:
                with self.state.transaction() as tx:
                    tx.release(project_id, held, self.owner)
                claimed -= held
            if stale:  # left by a daemon that died, or by this one before a failure
                tally["recovered"] += self._resolve(target, stale)
        out.busy += [o.work for o in outgoing if _thread(o) not in claimed]
        outgoing = [o for o in outgoing if _thread(o) in claimed]
        if not outgoing or not (replan or self.state.shared):
            return outgoing, claimed, []
        again, updates = self._replan(project_id, outgoing, records, tally)
        return again, claimed, updates

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
    ) -> tuple[list[Out], Updates]:
        """Decide again what was to be sent, now that versions someone else sent are known
        (learnt from the project, or recorded by another daemon of this state)."""
        rules = {id(o.work): o.rule for o in outgoing}
        works = [o.work for o in outgoing]
        known = self.state.versions_of(
            project_id, (w.parsed.thread_id for w in works if isinstance(w.parsed, Conversation))
        )
        before = {t: [(v.version, v.sync_key) for v in vs] for t, vs in known.items()}
        again: list[Out] = []
        updates: Updates = []
        for work, decision in plan(
            ((w, w.parsed, w.settled) for w in works), known, self.min_turns
        ):
            assert isinstance(work.parsed, Conversation)
            rule = rules[id(work)]
            if isinstance(decision, NewVersion):
                earlier = before.setdefault(work.parsed.thread_id, [])
                again.append(Out(work, decision.version, list(earlier), rule))
                earlier.append((decision.version, work.parsed.sync_key))
                continue
            if isinstance(decision, UpdateFeedback):
                updates.append((decision.version, work.parsed, work.shown or work.parsed))
                tally["feedback"] += 1
            else:
                tally["duplicates"] += 1
            reason = getattr(decision, "reason", None) or _status(decision)[1]
            records.append(self._record(work, project_id, "synced", reason, rule))
        return again, updates

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
        claimed: set[str],
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
                draft.data["source_file"], now, self.owner,
            )  # fmt: skip
            task = draft.numbered(o.version, o.previous)
            batch.append((o, pending, Outgoing(conversation.sync_key, task)))
        started = self.leases.clock()
        with self.state.transaction() as tx:
            if self.state.shared and batch:
                # Still this daemon's? Lost only if it stalled past its lease, and then
                # another daemon may be sending them: this chunk is left, decided again later.
                threads = {p.thread_id for _, p, _ in batch}
                lost = threads - tx.holding(project_id, threads, self.owner, 1.0)
                if lost:
                    raise LeaseLost(
                        f"{len(lost)} conversations were claimed longer ago than the lease "
                        f"({self.leases.times.lease_s:.0f} s): deciding them again"
                    )
            tx.put_conversations(records)
            tx.put_outbox((pending for _, pending, _ in batch), self.leases.times.lease_s)
        self.leases.written(started)

        delivered = Delivered()
        if batch:
            began = time.monotonic()
            with self.leases.importing():
                self.leases.check()
                while_importing()
                delivered = target.delivery.send([o for _, _, o in batch])
            tally["recovered"] += delivered.found_existing
            log.debug(
                "imported %d tasks in %.2f s", len(delivered.task_ids), time.monotonic() - began
            )

        versions, sent = [], []
        for o, pending, _ in batch:
            work = o.work
            assert isinstance(work.parsed, Conversation)
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

        def record(tx: Tx) -> None:
            tx.add_versions(versions)
            tx.put_conversations(sent)
            tx.put_files(item.record for item in done)
            tx.keep_only_conversations_of(
                {item.record.path: item.keys for item in done if item.keys is not None}
            )
            tx.close_tailed(w.key for w in works if w.tailed)
            # The project's expected task count moves with the rows this very transaction
            # takes out of the outbox: tried again after a COMMIT of unknown outcome, it
            # finds them gone and counts nothing twice.
            keys = [pending.sync_key for _, pending, _ in batch]
            dropped = tx.drop_own_outbox(project_id, keys, self.owner) if keys else set()
            tx.add_to_meta(target.project.count_key, len(dropped & set(delivered.task_ids)))
            tx.release(project_id, claimed, self.owner)

        self._write_until_it_holds(record, f"{len(versions)} versions just sent")

    def _write_until_it_holds(self, write: Callable[[Tx], None], what: str) -> None:
        """A repeatable write, tried again while the state database is out of reach, for
        as long as this daemon's lease (then others resolve what it holds)."""
        deadline = time.monotonic() + self.leases.times.lease_s
        pause_s = 0.5
        while True:
            try:
                with self.state.transaction() as tx:
                    write(tx)
                return
            except StateUnavailable as exc:
                if time.monotonic() + pause_s > deadline or self.stop.is_set():
                    raise
                log.warning("recording %s: %s; trying again in %.1f s", what, exc, pause_s)
                self.stop.wait(pause_s)
                pause_s = min(pause_s * 2, 10.0)


def _thread(o: Out) -> str:
    assert isinstance(o.work.parsed, Conversation)
    return o.work.parsed.thread_id


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
