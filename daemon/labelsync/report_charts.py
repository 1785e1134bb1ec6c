"""The report's charts: matplotlib, drawn to SVG in memory (no display, no files).

Text is drawn as paths (matplotlib's default `svg.fonttype`), so a chart needs
no font where it is opened and no name from the data (a model, a tone) ever
becomes markup; the page embeds each chart as an `<img>` data URI, where an
SVG can run nothing.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from labelsync.report import ANSWERS, Mean, Summary

_COLOURS = {"Yes": "#2cb67d", "Partly": "#f0a020", "No": "#e05050"}
_CLARITY, _ACCURACY = "#4c8dff", "#8a5cf6"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: works on a server, under systemd, in CI
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "labelsync", "font.size": 10})
    return plt


def _svg(figure: Any) -> str:
    """The figure as a data URI (image/svg+xml, base64)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _height(rows: int) -> float:
    return max(2.0, 0.45 * rows + 1.2)


def ratings_by_model(summary: Summary) -> str:
    """Mean conversation rating and the "answered" shares, per model."""
    plt = _pyplot()
    models = sorted(summary.by_model)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, _height(len(models))), sharey=True)
    means = [summary.by_model[m].rating.mean or 0 for m in models]
    bars = left.barh(models, means, color="#f0a020")
    left.bar_label(bars, [_n(summary.by_model[m].rating.n) for m in models], padding=3)
    left.set_xlim(0, 5.8)
    left.set_xlabel("mean conversation rating (1-5 stars)")
    left.invert_yaxis()
    _stacked(right, models, [summary.by_model[m].answered for m in models])
    right.set_xlabel('"was the question answered?" (share of annotations)')
    return _svg(fig)


def by_week(summary: Summary) -> str:
    plt = _pyplot()
    weeks = sorted(summary.by_week)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    means = [summary.by_week[w].rating.mean for w in weeks]
    top.plot(weeks, [m if m is not None else float("nan") for m in means], marker="o")
    top.set_ylim(1, 5)
    top.set_ylabel("mean rating")
    top.grid(alpha=0.3)
    bottom_edge = [0.0] * len(weeks)
    for answer in ANSWERS:
        shares = [_share(summary.by_week[w].answered, answer) for w in weeks]
        bottom.bar(weeks, shares, bottom=bottom_edge, color=_COLOURS[answer], label=answer)
        bottom_edge = [b + s for b, s in zip(bottom_edge, shares, strict=True)]
    bottom.set_ylabel("answered (share)")
    bottom.set_ylim(0, 1)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom.tick_params(axis="x", rotation=45)
    return _svg(fig)


def messages_by_model(summary: Summary) -> str:
    """Mean clarity and accuracy of the replies, per model."""
    models = [m for m, g in sorted(summary.by_model.items()) if g.clarity.n or g.accuracy.n]
    groups = [summary.by_model[m] for m in models]
    return _clarity_and_accuracy(
        models,
        [g.clarity for g in groups],
        [g.accuracy for g in groups],
        "mean per-reply rating (1-5 stars)",
        _height(len(models) * 2),
    )


def tone(summary: Summary) -> str:
    plt = _pyplot()
    names = [name for name, _ in summary.tone.most_common()]
    fig, axes = plt.subplots(figsize=(10, _height(len(names))))
    bars = axes.barh(names, [summary.tone[n] for n in names], color="#2cb67d")
    axes.bar_label(bars, padding=3)
    axes.invert_yaxis()
    axes.set_xlabel("replies judged, per tone")
    return _svg(fig)


def thumbs(summary: Summary) -> str:
    """The annotators' ratings of the replies the chat user gave a thumbs up or down."""
    kinds = [
        k for k in ("up", "down") if k in summary.thumbs_clarity or k in summary.thumbs_accuracy
    ]
    return _clarity_and_accuracy(
        [f"thumbs {k}" for k in kinds],
        [summary.thumbs_clarity[k] for k in kinds],
        [summary.thumbs_accuracy[k] for k in kinds],
        "annotators' mean rating of those replies",
        2.6,
    )


def _clarity_and_accuracy(
    labels: Sequence[str], clarity: Sequence[Mean], accuracy: Sequence[Mean], x: str, height: float
) -> str:
    """Paired bars per label: mean clarity and mean accuracy, each with its count."""
    plt = _pyplot()
    fig, axes = plt.subplots(figsize=(10, height))
    y = range(len(labels))
    for offset, stats, colour, name in (
        (-0.2, clarity, _CLARITY, "clarity"),
        (0.2, accuracy, _ACCURACY, "accuracy"),
    ):
        bars = axes.barh(
            [i + offset for i in y],
            [s.mean or 0 for s in stats],
            height=0.4,
            color=colour,
            label=name,
        )
        axes.bar_label(bars, [_n(s.n) for s in stats], padding=3)
    axes.set_yticks(list(y), labels)
    axes.invert_yaxis()
    axes.set_xlim(0, 5.8)
    axes.set_xlabel(x)
    axes.legend(loc="lower right")
    return _svg(fig)


def _stacked(axes: Any, rows: Sequence[str], counts: Sequence[Any]) -> None:
    left = [0.0] * len(rows)
    for answer in ANSWERS:
        shares = [_share(c, answer) for c in counts]
        axes.barh(rows, shares, left=left, color=_COLOURS[answer], label=answer)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    axes.set_xlim(0, 1)
    axes.legend(loc="lower right", ncols=3, fontsize=8)


def _share(counts: Any, answer: str) -> float:
    total = sum(counts.get(a, 0) for a in ANSWERS)
    return counts.get(answer, 0) / total if total else 0.0


def _n(n: int) -> str:
    return f"n={n:,}"
