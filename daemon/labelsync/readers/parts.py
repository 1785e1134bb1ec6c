"""A message's content, whatever its family, as the text an annotator reads.

Every provider nests content differently (OpenAI parts, Anthropic blocks,
Gemini parts, ChatGPT export parts), but the pieces are few: text, tool
calls, tool results, images and files, thinking. Each becomes readable text
in one convention, the same for every reader:

    text parts                  joined with a line break, their own breaks kept
    a tool call                 [tool call: NAME(ARGS)]   ARGS as compact JSON
    a tool result               its own message, role "tool": [tool result: NAME] TEXT
                                ([tool error: NAME] when flagged as an error)
    an image                    [image] or [image: URL]
    a file or document          [file: NAME]
    audio, a voice note         [audio], [voice note] TRANSCRIPT
    thinking / reasoning        [thinking] TEXT
    a search result, a source   [search result: TITLE — URL], [source: TITLE — URL]
    code run by the model       a fenced block, then [code result: OUTCOME] OUTPUT
    anything else               [TYPE], and a warning `validate` shows

Nothing is dropped silently: an unknown block leaves a placeholder and a warning.
Only marker blocks that carry nothing but their type and time stamps are left out.
labelsync.readers.blocks renders each family's blocks in this convention; a
reader that knows its family's own pieces (ChatGPT voice parts, Open WebUI's
HTML) renders them with the helpers below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".heic", ".svg")


@dataclass
class Rendered:
    """One message's content: its own text and tool results, in the order they came.

    Tool results become messages of their own; `split` cuts a message around them.
    """

    segments: list[tuple[bool, str]] = field(default_factory=list)  # (is a tool result, text)
    warnings: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text:
            self.segments.append((False, text))

    def result(self, text: str) -> None:
        self.segments.append((True, text))

    def lead(self, pieces: list[str]) -> None:
        """Attachments kept outside the content: chat UIs show them above the text."""
        self.segments[:0] = [(False, p) for p in pieces if p]

    def extend(self, other: Rendered) -> None:
        self.segments.extend(other.segments)
        self.warnings.extend(other.warnings)

    @property
    def text(self) -> str:
        return "\n".join(text for is_result, text in self.segments if not is_result and text)

    @property
    def results(self) -> list[str]:
        return [text for is_result, text in self.segments if is_result]


def split(role: str, rendered: Rendered) -> list[tuple[str, str]]:
    """(role, text) messages: text before a tool result stays in `role`'s message, each
    result is a `tool` message, text after the results is a new message of `role`."""
    out: list[tuple[str, str]] = []
    run: list[str] = []
    for is_result, text in rendered.segments:
        if is_result:
            if run:
                out.append((role, "\n".join(run)))
                run = []
            out.append(("tool", text))
        elif text:
            run.append(text)
    if run:
        out.append((role, "\n".join(run)))
    return out


@dataclass
class ToolNames:
    """Tool call id -> tool name, across a conversation: a result often names only its call's id.

    `recent` holds the calls of the latest turn that made any, so a result that names
    nothing (ShareGPT `observation`) can take the name when that turn made exactly one.
    """

    names: dict[str, str] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)

    def remember(self, call_id: Any, name: Any) -> None:
        if isinstance(call_id, str) and isinstance(name, str) and name:
            self.names[call_id] = name

    def get(self, call_id: Any) -> str | None:
        return self.names.get(call_id) if isinstance(call_id, str) else None

    def new_turn(self) -> None:
        self.recent = []

    def call(self, call_id: Any, name: Any, args: Any) -> str:
        """Remember a call and render it."""
        self.remember(call_id, name)
        self.recent.append(name if isinstance(name, str) else "")
        return tool_call(name, args)

    def result_name(self, call_id: Any, own: Any = None) -> str | None:
        """The name on the result itself, else its call's (by id), else the only recent call's."""
        if isinstance(own, str) and own:
            return own
        by_id = self.get(call_id)
        if by_id:
            return by_id
        return (self.recent[0] or None) if len(self.recent) == 1 else None


def tool_call(name: Any, args: Any) -> str:
    return f"[tool call: {name if isinstance(name, str) and name else '?'}({_args(args)})]"


def tool_result(name: str | None, text: str, *, error: bool = False) -> str:
    label = "tool error" if error else "tool result"
    head = f"[{label}: {name}]" if name else f"[{label}]"
    # Verbatim but for blank lines around it: leading spaces can matter (numbered lines).
    return f"{head} {text.lstrip(chr(13) + chr(10))}".rstrip()


def image(url: Any = None) -> str:
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return f"[image: {url}]"
    return "[image]"


def file(name: Any = None) -> str:
    return f"[file: {name}]" if isinstance(name, str) and name else "[file]"


def attachment(name: Any = None, mime: Any = None, url: Any = None) -> str:
    """A file reference: an image by MIME type or extension is shown as an image."""
    is_image = isinstance(mime, str) and mime.lower().startswith("image/")
    if not is_image and not (isinstance(mime, str) and mime):
        is_image = isinstance(name, str) and name.lower().endswith(_IMAGE_SUFFIXES)
    return image(url) if is_image else file(name)


def thinking(text: Any) -> str:
    return f"[thinking] {text}".rstrip() if isinstance(text, str) else "[thinking]"


def search_result(title: Any, url: Any, label: str = "search result") -> str:
    """Titles and URLs are what a reader of a search result wants; a bare [TYPE] hides them."""
    shown = [v.strip() for v in (title, url) if isinstance(v, str) and v.strip()]
    return f"[{label}: {' — '.join(shown)}]" if shown else f"[{label}]"


def code_block(code: Any, language: Any = None) -> str:
    lang = language.lower() if isinstance(language, str) and language != "unknown" else ""
    return f"```{lang}\n{code if isinstance(code, str) else ''}\n```"


def args_text(args: Any) -> str:
    """A result or arguments value as text: a string as it is, anything else as JSON."""
    return args if isinstance(args, str) else _dump(args)


def unknown(kind: str, where: str, out: Rendered) -> None:
    out.add(f"[{kind}]")
    out.warnings.append(f"{where}: unknown block type {kind!r} shown as [{kind}]")


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON data (only a caller bug could get here)
        return str(value)


def _args(args: Any) -> str:
    if args is None:
        return ""
    if isinstance(args, str):
        if not args.strip():
            return ""
        # OpenAI sends arguments as a JSON string: show them as the JSON they mean.
        try:
            return _dump(json.loads(args))
        except ValueError:
            return _dump(args.strip())  # code or a command: a JSON string, quotes escaped
    return _dump(args)
