"""The project's side of versions: what is there, what is live, what the chat user said since.

- `learn`: versions in the project that this state does not know: all of them
  when a state is new or lost (a rebuild), then only tasks created since the
  highest one seen, so a labelsync with another state on the same project is
  noticed before anything is sent twice. Daemons sharing this state are not
  strangers: they count what they import where they record it. Each
  task names the versions before it (`data.previous`), so versions retired
  from the project are known too.
- `tidy`: one live task per conversation. When version N+1 is in, earlier
  versions nothing human was done on (no annotation, no skip, no draft) are
  deleted from the project, since Community has no other way to take a task
  out of the labeling queue; versions with human work stay, marked
  `latest: false`. LABELSYNC_KEEP_VERSIONS keeps every version.
- `update_feedback`: a thumbs-up given after a conversation was sent is not a
  new version: the live task shows it while nobody has annotated it, and its
  `meta.labelsync.feedback` always carries it (the export reads it there).

Every change here is repeatable (a delete of a gone task, the same update
again), so a crash half-way is mended by doing it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from labelsync.contract import Conversation
from labelsync.delivery import Delivery
from labelsync.labelstudio import LabelStudio, remote_version
from labelsync.state import State, VersionRecord
from labelsync.task import feedback_of, feedback_update

log = logging.getLogger(__name__)

_MARK = "seen_task:{}"  # meta key: the highest task id seen in a project
_COUNT = "task_count:{}"  # meta key: how many tasks the project should hold


@dataclass
class Tidied:
    retired: int = 0
    kept: int = 0
    feedback: list[str] = field(default_factory=list)


class Project:
    def __init__(
        self, state: State, ls: LabelStudio, delivery: Delivery, keep_versions: bool = False
    ) -> None:
        self.state, self.ls, self.delivery = state, ls, delivery
        self.id = ls.project_id
        self.keep_versions = keep_versions

    @property
    def count_key(self) -> str:
        """The meta key of how many tasks this state expects the project to hold."""
        return _COUNT.format(self.id)

    # -- what is in the project ----------------------------------------------------------
    def learn(self) -> int:
        """Versions someone else put in the project since this state last looked.

        Cheap when nothing happened: the project's task count is what this state
        expects (one request); only when it is not are the tasks created since the
        highest one seen read and their versions learnt.

        Daemons sharing this state (PostgreSQL) move the expected count as they import
        and retire, in the transactions that record it, so they are not strangers to
        each other: a task whose sync key is in the outbox is one of theirs still being
        recorded, and is left to them. The count is set to what Label Studio says only
        if nobody changed it meanwhile and nothing is being imported; otherwise the
        next look settles it.
        """
        key = self.count_key
        expected = self.state.get_meta(key)
        actual = self.delivery.call(self.ls.task_count)
        if expected is not None and int(expected) == actual:
            return 0
        # More tasks than expected, but no more than this state's daemons are importing
        # right now: theirs, counted when they record them. Reading the project's new
        # tasks (each with its whole conversation) at every chunk of every daemon cost
        # Label Studio more than the imports; a stranger's tasks are found when it is quiet.
        in_flight = [p for p in self.state.pending() if p.project_id == self.id]
        if expected is not None and 0 < actual - int(expected) <= len(in_flight):
            return 0
        mark = int(self.state.get_meta(_MARK.format(self.id)) or 0) or self.state.highest_task_id(
            self.id
        )
        found = []
        highest = mark
        for task_id, data in self.delivery.call(lambda: list(self.ls.tasks_after(mark))):
            highest = max(highest, task_id)
            version = remote_version(task_id, data)
            if version is not None:
                found.append(version)
        # The outbox first, then versions: a daemon's record moves a version from one to
        # the other in one transaction, so it is seen in at least one of them.
        keys_in_flight = {p.sync_key for p in self.state.pending() if p.project_id == self.id}
        known = self.state.versions_of(self.id, (v.thread_id for v in found))
        keys = {v.sync_key for records in known.values() for v in records}
        new = [
            r
            for v in found
            if v.sync_key not in keys and v.sync_key not in keys_in_flight
            for r in self._records(v)
        ]
        with self.state.transaction() as tx:
            tx.add_versions(new)
            tx.raise_meta(_MARK.format(self.id), highest)
            if not tx.outbox_in_flight(self.id):
                tx.set_meta_if(key, str(actual), expected)
        fresh = [v for v in new if not v.retired]
        if fresh:
            log.warning(
                "%d tasks in project %d were made by another labelsync since this one last "
                "looked (another state on the same project?): learnt, none is sent again",
                len(fresh),
                self.id,
            )
        return len(fresh)

    def rebuild(self) -> int:
        """A new (or lost) state learns every version already in the project."""
        remote = []
        highest = 0
        for found in self.ls.labelsync_versions():
            remote.extend(self._records(found))
            highest = max(highest, found.task_id)
        count = self.delivery.call(self.ls.task_count)
        with self.state.transaction() as tx:
            tx.add_versions(remote)
            tx.raise_meta(_MARK.format(self.id), highest)
            tx.set_meta(self.count_key, str(count))
        live = [v for v in remote if not v.retired]
        if live:
            log.info("state rebuilt from Label Studio: %d existing versions", len(live))
        return len(live)

    def _records(self, found: Any) -> list[VersionRecord]:
        records = [
            VersionRecord(
                self.id,
                found.thread_id,
                found.version,
                found.sync_key,
                found.task_id,
                found.source_file,
            )
        ]
        # Versions it superseded that are no longer in the project: known, retired.
        records += [
            VersionRecord(self.id, found.thread_id, version, key, 0, found.source_file, "", True)
            for version, key in found.previous
        ]
        return records

    # -- one live task per conversation ---------------------------------------------------
    def tidy(self) -> Tidied:
        """Retire (or mark not latest) every superseded version not yet tidied."""
        done = Tidied()
        for version in self.state.superseded(self.id):
            task = self._task(version)
            if task is None:  # gone already (deleted before a crash, by a person, or by
                # another daemon sharing this state that has not recorded it yet)
                self._retire(version, deleted=False, done=done)
                continue
            if not self.keep_versions and not _human_work(task):
                deleted = self.delivery.call(partial(self.ls.delete_task, version.task_id))
                self._retire(version, deleted=deleted, done=done)
                continue
            data = task.get("data") if isinstance(task.get("data"), dict) else None
            if data is not None and data.get("latest") is not False:
                data = {**data, "latest": False}
                self.delivery.call(partial(self.ls.update_task, version.task_id, data))
            with self.state.transaction() as tx:
                tx.keep(self.id, [version.sync_key])
            done.kept += 1
        return done

    def _task(self, version: VersionRecord) -> dict[str, Any] | None:
        """The version's task, or None if it is gone. Label Studio on SQLite gives the id
        of a deleted task, if it was the highest, to the next task it creates: a task
        under that id is this version's only if it is in this project and carries its
        sync key (else tidying would delete someone else's conversation)."""
        task = self.delivery.call(partial(self.ls.task, version.task_id))
        if task is None or task.get("project", self.id) != self.id:
            return None
        data = task.get("data")
        return task if isinstance(data, dict) and data.get("sync_key") == version.sync_key else None

    def _retire(self, version: VersionRecord, deleted: bool, done: Tidied) -> None:
        """Record a superseded version as out of the project.

        Two daemons may retire the same version at once: one deletes the task, the other
        finds it gone (or deletes it too). The project's expected count moves with the
        delete that removed a task; the retirement is told (logged, counted) by the
        daemon whose record took it, so once whichever order they ran in."""
        with self.state.transaction() as tx:
            took = tx.retire(self.id, [version.sync_key])
            if deleted:
                tx.add_to_meta(self.count_key, -1)
        if not took:
            return
        done.retired += 1
        log.info(
            "retired %s version %d (task %d): %s",
            version.thread_id,
            version.version,
            version.task_id,
            "nothing was done on it yet" if deleted else "it was gone from the project already",
        )

    # -- the chat user's feedback, changed after the conversation was sent -------------------
    def update_feedback(
        self, updates: Iterable[tuple[VersionRecord, Conversation, Conversation]]
    ) -> int:
        """updates: (the version whose content this is, the conversation as read now, and
        as it may be shown: redacted). Returns how many tasks were updated."""
        count = 0
        for version, conversation, shown in updates:
            if version.retired or version.task_id <= 0:
                continue  # not in the project any more: nothing shows it
            task = self._task(version)
            if task is None:
                continue  # deleted from the project: nothing shows it
            meta: dict[str, Any] = _dict(task.get("meta"))
            ours = _dict(meta.get("labelsync"))
            meta = {**meta, "labelsync": {**ours, "feedback": feedback_of(shown)}}
            data: dict[str, Any] | None = None
            if not _human_work(task) and isinstance(task.get("data"), dict):
                # Nobody judged it yet: show the new thumbs on their messages.
                data = {**task["data"], **feedback_update(shown)}
            self.delivery.call(partial(self.ls.update_task, version.task_id, data, meta))
            with self.state.transaction() as tx:
                tx.set_feedback_key(self.id, version.sync_key, conversation.feedback_key)
            count += 1
        return count


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _human_work(task: dict[str, Any]) -> bool:
    """An annotation, a skipped one, or a draft: something a person did on this task."""
    return bool(
        task.get("annotations")
        or task.get("drafts")
        or task.get("total_annotations")
        or task.get("cancelled_annotations")
    )
