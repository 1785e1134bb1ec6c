"""The report as one self-contained HTML page: inline CSS, charts as data URIs, no script.

Conversation text, comments, model and thread names come from chat users,
models and annotators: every one is escaped (html.escape, quotes included),
and links are built from the configured Label Studio URL and numbers only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from labelsync import report_charts as charts
from labelsync.report import ANSWERS, Group, Reply, Summary

AGREEMENT_LABELS = {
    "rating": ("conversation rating", "ordinal", "tasks"),
    "answered": ('"answered"', "nominal", "tasks"),
    "clarity": ("reply clarity", "ordinal", "replies"),
    "accuracy": ("reply accuracy", "ordinal", "replies"),
}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ccc;
  padding: 4px 8px; vertical-align: top; text-align: left; } th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { max-width: 100%; display: block; margin: 8px 0; }
.text { white-space: pre-wrap; max-width: 520px; font-size: 13px; }
.muted { color: #666; }
"""


def page(summary: Summary, title: str, task_url: Callable[[int], str]) -> str:
    """task_url: task id -> its address in Label Studio."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing from outside may load: no script, no remote image, style or font.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{summary.tasks:,} annotated tasks, {summary.annotations:,} '
        f"annotations by {len(summary.annotators)} annotators; made {made} by labelsync.</p>",
    ]
    if not summary.tasks:
        parts.append("<p>No annotated task yet.</p></body></html>")
        return "\n".join(parts)
    parts += [
        "<h2>Conversations per model</h2>",
        _img(charts.ratings_by_model(summary), "mean rating and answered shares per model"),
        _groups("model", summary.by_model),
        "<h2>Per week (of the conversation)</h2>",
        _img(charts.by_week(summary), "mean rating and answered shares per week"),
        _groups("week", summary.by_week),
        "<h2>Replies per model: clarity and accuracy</h2>",
        _img(charts.messages_by_model(summary), "mean clarity and accuracy per model"),
        _table(
            ["model", "clarity", "n", "accuracy", "n"],
            [
                [m, _f(g.clarity.mean), g.clarity.n, _f(g.accuracy.mean), g.accuracy.n]
                for m, g in sorted(summary.by_model.items())
            ],
        ),
    ]
    if summary.tone:
        parts += ["<h2>Tone</h2>", _img(charts.tone(summary), "replies per tone")]
    parts += _thumbs(summary)
    parts += _worst(summary.worst(), task_url)
    parts += _agreement(summary)
    parts.append("</body></html>")
    return "\n".join(parts)


def _thumbs(summary: Summary) -> list[str]:
    out = ["<h2>The chat user's thumbs against the annotators' ratings</h2>"]
    if not summary.thumbs_vs:
        return [*out, "<p>No rated reply has the chat user's thumbs.</p>"]
    verdicts = ("good", "middling", "poor", "unrated")
    rows = [
        [f"thumbs {k}", *(summary.thumbs_vs[(k, v)] for v in verdicts)]
        for k in ("up", "down")
        if any(summary.thumbs_vs[(k, v)] for v in verdicts)
    ]
    return [
        *out,
        _img(charts.thumbs(summary), "annotators' ratings of replies with thumbs up or down"),
        '<p class="muted">Replies, by the annotators\' score (the lower of mean clarity and '
        "mean accuracy): good 4 or more, poor 2 or less.</p>",
        _table(["chat user", "good", "middling", "poor", "not rated"], rows),
    ]


def _worst(replies: Sequence[Reply], task_url: Callable[[int], str]) -> list[str]:
    out = ["<h2>Worst-rated replies</h2>"]
    if not replies:
        return [*out, "<p>No reply has a clarity or accuracy rating yet.</p>"]
    rows = []
    for r in replies:
        link = f'<a href="{escape(task_url(r.task_id))}">task {r.task_id}</a>'
        rows.append(
            "<tr>"
            f'<td class="num">{r.score:.1f}</td><td>{escape(r.thread_id)} v{r.version} '
            f"#{r.index}<br>{link}</td><td>{escape(r.model)}</td>"
            f'<td class="num">{_f(r.clarity)}</td><td class="num">{_f(r.accuracy)}</td>'
            f"<td>{escape(r.thumbs or '')}</td>"
            f'<td class="text">{escape(r.text)}</td>'
            f'<td class="text">{"<br>".join(escape(c) for c in r.comments)}</td></tr>'
        )
    head = ["score", "conversation", "model", "clarity", "accuracy", "thumbs", "reply", "comments"]
    return [
        *out,
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>",
        *rows,
        "</table>",
    ]


def _agreement(summary: Summary) -> list[str]:
    out = [
        "<h2>Agreement between annotators (Krippendorff's alpha)</h2>",
        f"<p>{summary.multi_annotated:,} tasks have two or more annotations. Alpha is 1 for "
        "perfect agreement, 0 for agreement no better than chance.</p>",
    ]
    rows = []
    for name, alpha in summary.agreement.items():
        label, kind, units = AGREEMENT_LABELS[name]
        value = alpha.value()
        shown = "n/a" if value is None else f"{value:.3f}"
        rows.append([label, kind, shown, f"{alpha.units:,} {units}", f"{alpha.values:,}"])
    return [*out, _table(["judgment", "alpha", "value", "computed on", "values"], rows)]


def _img(uri: str, alt: str) -> str:
    return f'<img class="chart" src="{uri}" alt="{escape(alt)}">'


def _groups(name: str, groups: Mapping[str, Group]) -> str:
    """Conversation ratings and "answered" counts, a row per model or per week."""
    return _table(
        [name, "tasks", "ratings", "mean rating", *ANSWERS],
        [
            [key, g.tasks, g.rating.n, _f(g.rating.mean), *(g.answered[a] for a in ANSWERS)]
            for key, g in sorted(groups.items())
        ],
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = [
        "<tr>"
        + "".join(
            f'<td class="num">{v:,}</td>' if isinstance(v, int) else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    ]
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def task_link(base_url: str, project_id: int) -> Callable[[int], str]:
    base = base_url.rstrip("/")
    return lambda task_id: f"{base}/projects/{int(project_id)}/data?task={quote(str(task_id))}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
