"""A message as an annotator reads it: markdown rendered to HTML that cannot run script.

Chat replies are mostly markdown (code blocks, lists, tables). Label Studio's
own ways to show it are unsafe for text an LLM or a chat user controls: its
<Markdown> tag renders raw HTML from the data without a sanitiser (an
<iframe srcdoc> ran script in the annotator's page when we tried), and
<HyperText>'s sanitiser keeps `javascript:` links, forms and styles. So the
HTML is made here and the template only shows it (<HyperText inline>):

1. markdown-it-py with raw HTML off: HTML in a message is shown as text,
   never parsed; its link validator refuses javascript:, vbscript:, file:
   and data: URLs; single line breaks are kept, as chat users expect;
2. nh3 (the ammonia sanitiser) as a second fence: only the tags markdown
   makes, http/https/mailto links with rel=noopener, no images (a remote
   image would be fetched by the annotator's browser: a tracking pixel; its
   alt text is kept);
3. the frame around it (role, index, model, the chat user's feedback) is
   built here with every value from the conversation escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import nh3
from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False}).enable(
    ["table", "strikethrough"]
)
_TAGS = {
    "p", "br", "hr", "pre", "code", "blockquote", "em", "strong", "del", "s",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
}
_ROLE_TITLE = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
# Above this, a message is shown as plain text: markdown of that size is not a chat reply,
# and rendering it would only make the task heavy.
_MAX_MARKDOWN = 200_000


# Plain prose: lines that start with a letter and hold only letters, digits, spaces and
# punctuation that means nothing to markdown there (no blank line; `#`, `+`, `=`, `-`
# only mean something at the start of a line; nothing makes emphasis, a link or HTML).
# Most user messages are such; markdown-it and nh3 would make exactly
# `<p>line<br>\nline</p>\n` of them (tests/daemon/test_render.py checks it on random
# text), at three times the cost: rendering was a third of a backfill's time.
_PLAIN_LINE = r"""[^\W\d_](?:[^\W_]|[ ,.;:?!'"()/%$@#+=-])*(?<! )"""
_PLAIN = re.compile(rf"{_PLAIN_LINE}(?:\n{_PLAIN_LINE})*")


def markdown(text: str) -> str:
    """A message's markdown as HTML that cannot run script in the annotator's page."""
    if _PLAIN.fullmatch(text):
        return "<p>" + text.replace("\n", "<br>\n") + "</p>\n"
    return _rendered(text)


def _rendered(text: str) -> str:
    if len(text) > _MAX_MARKDOWN:
        return f"<pre>{html.escape(text)}</pre>"
    rendered = _MD.render(text)
    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},  # markdown table column alignment
        strip_comments=True,
    )


def message(index: int, role: str, content: str, model: str | None, feedback: Any) -> str:
    """One message: who said it, its number, the text, and the chat user's thumbs on it."""
    css = role if role in _ROLE_TITLE else "other"
    title = html.escape(_ROLE_TITLE.get(role, role))
    by = f' <span class="ls-msg__model">{html.escape(model)}</span>' if model else ""
    return (
        f'<div class="ls-msg ls-msg--{css}" data-index="{index}">'
        f'<div class="ls-msg__head">{title} <span class="ls-msg__idx">#{index}</span>{by}</div>'
        f'<div class="ls-msg__body">{markdown(content)}</div>'
        f"{feedback_html(feedback)}</div>"
    )


def feedback_html(feedback: Any) -> str:
    if not isinstance(feedback, Mapping) or not feedback:
        return ""
    verdict, css = verdict_of(feedback)
    comment = feedback.get("comment")
    said = f": \u201c{html.escape(str(comment))}\u201d" if comment else ""
    return (
        f'<div class="ls-fb ls-fb--{css}"><b>Chat user\'s feedback on this message</b>: '
        f"{html.escape(verdict)}{said}</div>"
    )


def verdict_of(feedback: Mapping[str, Any]) -> tuple[str, str]:
    """The chat user's thumbs in words (this machine's Chromium has no emoji font)."""
    score = feedback.get("score")
    if score == 1:
        return "thumbs up", "up"
    if score == 0:
        return "thumbs down", "down"
    return ("a comment" if score is None else f"score {score}"), "other"


def _image(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
    """`![alt](url)` is shown as `[image: alt]`: nothing is fetched from the annotator's
    browser (a remote image is a tracking pixel)."""
    alt = "".join(child.content for child in tokens[index].children or [])
    return html.escape(f"[image: {alt}]" if alt else "[image]")


_MD.add_render_rule("image", _image)
