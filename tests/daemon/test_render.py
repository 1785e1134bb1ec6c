"""labelsync.render: a message's markdown as safe HTML, and plain prose on a fast path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from labelsync.render import _PLAIN, _rendered, markdown

# Prose, and every character that means something to markdown or HTML, in lines.
_CHARS = st.sampled_from(
    list("abcXYZ019 éДß,.;:?!'\"()/%$@-") + list("*_[]#<>&|~`\\=+\t") + ["  ", "1. ", "- "]
)
_LINE = st.lists(_CHARS, max_size=30).map("".join)
_LINES = st.lists(_LINE, min_size=1, max_size=4)


@settings(max_examples=3000, deadline=None)
@given(_LINE, _LINES)
def test_the_fast_path_for_plain_prose_is_exactly_what_markdown_would_make(word, lines):
    """Whatever text takes the fast path renders as markdown-it and nh3 would have."""
    for text in (word, "\n".join(lines), "\n".join([word, *lines])):
        assert markdown(text) == _rendered(text), repr(text)


def test_ordinary_chat_lines_take_the_fast_path_and_markdown_does_not():
    assert _PLAIN.fullmatch("Hi, where is my order? It's been 5 days (since Monday).\nThanks!")
    for text in ("1. first", "- item", "Use `code`", "a\n\nb", "Hello *you*", "x <b>", "#tag"):
        assert not _PLAIN.fullmatch(text)
        assert markdown(text) == _rendered(text)


def test_markup_in_a_message_is_shown_never_run():
    out = markdown('<script>alert(1)</script> [x](javascript:alert(1)) ![p](http://t/x.png)')
    assert "<script" not in out and "href=\"javascript" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "[image: p]" in out
