"""What the annotations say, summed in one pass over the annotated tasks (pure, no IO).

Every submitted annotation counts: each is one person's judgment, so a
conversation annotated in two versions, or by two annotators, counts twice.
Weeks are the conversation's (its `timestamp`; the annotation's time when it has
none): they follow the model's quality over time, not the annotators' pace.
A reply's score is the lower of its mean clarity and mean accuracy over the
task's annotations, as in the export's KTO rule. Memory is bounded: sums,
counts, coincidence matrices and the `worst_kept` lowest replies.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from statistics import fmean

from labelsync.annotations import AnnotatedTask
from labelsync.report_agreement import Alpha

ANSWERS = ("Yes", "Partly", "No")
THUMBS = {1: "up", 0: "down"}


@dataclass
class Mean:
    n: int = 0
    total: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class Group:
    """Judgments of one model, or of one week."""

    rating: Mean = field(default_factory=Mean)
    answered: Counter[str] = field(default_factory=Counter)
    clarity: Mean = field(default_factory=Mean)
    accuracy: Mean = field(default_factory=Mean)
    tone: Counter[str] = field(default_factory=Counter)
    tasks: int = 0


@dataclass(frozen=True, order=True)
class Reply:
    """A low-rated reply, with what is needed to show it and link to its task."""

    score: float
    task_id: int
    index: int
    thread_id: str = field(compare=False)
    version: int = field(compare=False)
    model: str = field(compare=False)
    clarity: float | None = field(compare=False)
    accuracy: float | None = field(compare=False)
    text: str = field(compare=False)
    comments: tuple[str, ...] = field(compare=False)
    thumbs: str | None = field(compare=False)


@dataclass
class Summary:
    worst_kept: int = 20
    tasks: int = 0
    annotations: int = 0
    annotators: set[int] = field(default_factory=set)
    by_model: defaultdict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    by_week: defaultdict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    tone: Counter[str] = field(default_factory=Counter)
    # thumbs ("up"/"down") -> the annotators' clarity and accuracy of those replies
    thumbs_clarity: defaultdict[str, Mean] = field(default_factory=lambda: defaultdict(Mean))
    thumbs_accuracy: defaultdict[str, Mean] = field(default_factory=lambda: defaultdict(Mean))
    # (thumbs, verdict) -> replies; verdict: good (score >= 4), middling, poor (<= 2), unrated
    thumbs_vs: Counter[tuple[str, str]] = field(default_factory=Counter)
    agreement: dict[str, Alpha] = field(
        default_factory=lambda: {
            "rating": Alpha(ordinal=True),
            "answered": Alpha(ordinal=False),
            "clarity": Alpha(ordinal=True),
            "accuracy": Alpha(ordinal=True),
        }
    )
    multi_annotated: int = 0
    _worst: list[tuple[float, int, int, Reply]] = field(default_factory=list)

    def add(self, task: AnnotatedTask) -> None:
        self.tasks += 1
        self.annotations += len(task.annotations)
        model = task.model or "(unknown)"
        week = _week(task.timestamp or task.annotations[0].created_at)
        self.by_model[model].tasks += 1
        self.by_week[week].tasks += 1
        for annotation in task.annotations:
            if annotation.annotator_id is not None:
                self.annotators.add(annotation.annotator_id)
            for group in (self.by_model[model], self.by_week[week]):
                if annotation.rating is not None:
                    group.rating.add(annotation.rating)
                if annotation.answered:
                    group.answered[annotation.answered] += 1
        if len(task.annotations) >= 2:
            self.multi_annotated += 1
            self.agreement["rating"].add([a.rating for a in task.annotations if a.rating])
            self.agreement["answered"].add([a.answered for a in task.annotations if a.answered])
        for message in task.chat:
            if message.role == "assistant":
                self._reply(task, message.index, task.model_of(message.index))

    def _reply(self, task: AnnotatedTask, index: int, model: str) -> None:
        judged = [a.messages[index] for a in task.annotations if index in a.messages]
        clarity = [j.clarity for j in judged if j.clarity is not None]
        accuracy = [j.accuracy for j in judged if j.accuracy is not None]
        group = self.by_model[model]
        for value in clarity:
            group.clarity.add(value)
        for value in accuracy:
            group.accuracy.add(value)
        for j in judged:
            group.tone.update(j.tone)
            self.tone.update(j.tone)
        self.agreement["clarity"].add(clarity)
        self.agreement["accuracy"].add(accuracy)
        means = [fmean(v) for v in (clarity, accuracy) if v]
        score = min(means) if means else None
        feedback = task.feedback.get(index)
        thumbs = THUMBS.get(feedback.score) if feedback and feedback.score is not None else None
        if thumbs:
            for value in clarity:
                self.thumbs_clarity[thumbs].add(value)
            for value in accuracy:
                self.thumbs_accuracy[thumbs].add(value)
            self.thumbs_vs[(thumbs, _verdict(score))] += 1
        if score is None:
            return
        reply = Reply(
            score=score,
            task_id=task.task_id,
            index=index,
            thread_id=task.thread_id,
            version=task.version,
            model=model,
            clarity=fmean(clarity) if clarity else None,
            accuracy=fmean(accuracy) if accuracy else None,
            text=task.chat[index].content[:400],
            comments=tuple(j.comment for j in judged if j.comment),
            thumbs=thumbs,
        )
        # A max-heap of the lowest scores (negated), so the best of them leaves first.
        entry = (-score, -task.task_id, -index, reply)
        if len(self._worst) < self.worst_kept:
            heapq.heappush(self._worst, entry)
        elif entry > self._worst[0]:
            heapq.heapreplace(self._worst, entry)

    def worst(self) -> list[Reply]:
        return sorted(entry[3] for entry in self._worst)


def _verdict(score: float | None) -> str:
    if score is None:
        return "unrated"
    return "good" if score >= 4 else "poor" if score <= 2 else "middling"


def _week(timestamp: str) -> str:
    """ISO week, e.g. 2026-W48 ("unknown" when the time cannot be read)."""
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        return "unknown"
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"
