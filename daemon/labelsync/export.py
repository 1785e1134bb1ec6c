"""Annotations out as training data: JSON Lines, one format at a time, streamed.

- `messages`: one row per message an annotator judged, per annotation: the
  conversation, version, message index and id, role, text, model, each
  per-message judgment by name, the conversation's judgments, the chat user's
  feedback on that message, the annotator and when.
- `sft`: `{"messages": [{"role", "content"}, ...]}` (the OpenAI / Hugging Face chat
  format) for each conversation whose rating is at least `min_rating`: the mean
  of its annotators' ratings, on its latest annotated version.
- `kto`: `{"prompt": [...], "completion": [reply], "label": bool}` (TRL's
  conversational unpaired-preference format) per assistant reply of the latest
  annotated version, labelled by `kto_label`.

Memory stays flat in the number of tasks: pages are read, written and dropped.
`sft` and `kto` keep one version per conversation, which only the end of the
listing can tell, so their rows wait in a temporary SQLite file on disk, one
entry per conversation, replaced when a later annotated version comes.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from statistics import fmean
from typing import Any, TextIO

from labelsync.annotations import AnnotatedTask, NotOurs, Template, parse_task

FORMATS = ("messages", "sft", "kto")
DEFAULT_MIN_RATING = 4.0
RUDE = ("Rude", "Rude or dismissive")  # this template's and the earlier one's words
DESIRABLE_FROM, UNDESIRABLE_TO = 4.0, 2.0


def read_tasks(
    pages: Iterable[Any], template: Template, tally: Counter[str]
) -> Iterator[AnnotatedTask]:
    """Pages of raw tasks (labelstudio.AnnotatedPage) -> annotated labelsync tasks."""
    for page in pages:
        for raw in page.tasks:
            tally["tasks"] += 1
            try:
                task = parse_task(raw, template)
            except NotOurs:
                tally["not_ours"] += 1
                continue
            if not task.annotations:
                tally["skipped_only"] += 1  # every annotation was a skip, or empty
                continue
            tally["annotations"] += len(task.annotations)
            yield task


# -- rows ----------------------------------------------------------------------------------
def message_rows(task: AnnotatedTask, annotators: Mapping[int, str]) -> Iterator[dict[str, Any]]:
    for annotation in task.annotations:
        who = annotation.annotator_id
        for judged in annotation.messages.values():
            if not judged.rated():
                continue
            message = task.chat[judged.index]
            feedback = task.feedback.get(judged.index)
            yield {
                "thread_id": task.thread_id,
                "version": task.version,
                "latest": task.latest,
                "task_id": task.task_id,
                "index": message.index,
                "message_id": message.id,
                "role": message.role,
                "text": message.content,
                "model": message.model or task.model or None,
                "clarity": judged.clarity,
                "accuracy": judged.accuracy,
                "tone": list(judged.tone),
                "comment": judged.comment,
                "intent": judged.intent,
                "conversation_rating": annotation.rating,
                "answered": annotation.answered,
                "conversation_comment": annotation.comment,
                "feedback": None
                if feedback is None
                else {"score": feedback.score, "comment": feedback.comment, "at": feedback.at},
                "annotator": annotators.get(who, f"user {who}") if who is not None else None,
                "annotator_id": who,
                "annotation_id": annotation.id,
                "annotated_at": annotation.created_at,
                "updated_at": annotation.updated_at,
            }


def conversation_rating(task: AnnotatedTask) -> float | None:
    """The mean of the annotators' conversation ratings (None: nobody rated it)."""
    ratings = [a.rating for a in task.annotations if a.rating is not None]
    return fmean(ratings) if ratings else None


def sft_row(task: AnnotatedTask) -> dict[str, Any]:
    return {"messages": [{"role": m.role, "content": m.content} for m in task.chat]}


def kto_label(task: AnnotatedTask, index: int) -> bool | None:
    """Desirable (True), undesirable (False) or neither (None) for the reply at `index`.

    The annotators' judgments decide when there are any: a reply any annotator
    called rude is undesirable; else its score is the lower of its mean clarity
    and mean accuracy (a clear but wrong reply is a bad one): 4 or more desirable,
    2 or less undesirable, in between neither. Without annotators' judgments, the
    chat user's thumbs decide: up desirable, down undesirable.
    """
    judged = [a.messages[index] for a in task.annotations if index in a.messages]
    if any(t in RUDE for j in judged for t in j.tone):
        return False
    means = [
        fmean(values)
        for values in (
            [j.clarity for j in judged if j.clarity is not None],
            [j.accuracy for j in judged if j.accuracy is not None],
        )
        if values
    ]
    if means:
        score = min(means)
        if score >= DESIRABLE_FROM:
            return True
        return False if score <= UNDESIRABLE_TO else None
    feedback = task.feedback.get(index)
    if feedback is not None and feedback.score in (0, 1):
        return feedback.score == 1
    return None


def kto_rows(task: AnnotatedTask, tally: Counter[str]) -> Iterator[dict[str, Any]]:
    for message in task.chat:
        if message.role != "assistant":
            continue
        label = kto_label(task, message.index)
        if label is None:
            tally["kto_undecided"] += 1
            continue
        tally["kto_desirable" if label else "kto_undesirable"] += 1
        yield {
            "prompt": [{"role": m.role, "content": m.content} for m in task.chat[: message.index]],
            "completion": [{"role": "assistant", "content": message.content}],
            "label": label,
        }


# -- the latest annotated version of each conversation --------------------------------------
class LatestVersions:
    """thread_id -> the rows of its latest annotated version, on disk (temporary SQLite)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="labelsync-export-", dir=directory)
        self._db = sqlite3.connect(Path(self._dir.name) / "latest.sqlite3")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE latest (thread_id TEXT PRIMARY KEY, version INTEGER, "
            "rows TEXT, counts TEXT)"
        )

    def offer(self, task: AnnotatedTask, rows: list[str], counts: Counter[str]) -> None:
        self._db.execute(
            "INSERT INTO latest VALUES (?, ?, ?, ?) ON CONFLICT(thread_id) DO UPDATE SET "
            "version = excluded.version, rows = excluded.rows, counts = excluded.counts "
            "WHERE excluded.version > latest.version",
            (task.thread_id, task.version, "".join(rows), json.dumps(counts)),
        )

    def drain(self, tally: Counter[str]) -> Iterator[str]:
        """The kept rows, conversation by conversation (ordered by id)."""
        cursor = self._db.execute("SELECT rows, counts FROM latest ORDER BY thread_id")
        for rows, counts in cursor:
            tally["conversations"] += 1
            tally.update(json.loads(counts))
            if rows:
                yield rows

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


# -- the whole export ----------------------------------------------------------------------
def write(
    tasks: Iterable[AnnotatedTask],
    fmt: str,
    out: TextIO,
    *,
    annotators: Mapping[int, str],
    min_rating: float = DEFAULT_MIN_RATING,
    tally: Counter[str],
    spool_dir: Path | None = None,
    on_task: Callable[[], object] = lambda: None,
) -> None:
    """Write `fmt` rows for these tasks to `out`; `tally` counts what was read and written."""
    if fmt == "messages":
        for task in tasks:
            for row in message_rows(task, annotators):
                out.write(_line(row))
                tally["rows"] += 1
            on_task()
        return
    latest = LatestVersions(spool_dir)
    try:
        for task in tasks:
            counts: Counter[str] = Counter()
            if fmt == "sft":
                rating = conversation_rating(task)
                if rating is None:
                    counts["sft_unrated"] += 1
                    rows = []
                elif rating >= min_rating:
                    counts["sft_kept"] += 1
                    rows = [_line(sft_row(task))]
                else:
                    counts["sft_below"] += 1
                    rows = []
            else:
                rows = [_line(row) for row in kto_rows(task, counts)]
            latest.offer(task, rows, counts)
            on_task()
        for lines in latest.drain(tally):
            out.write(lines)
            tally["rows"] += lines.count("\n")
    finally:
        latest.close()


def _line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"
