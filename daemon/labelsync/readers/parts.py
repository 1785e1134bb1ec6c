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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelsync.contract import json_type

# Blocks made only of these keys mark a moment in the UI (step starts, token budgets).
_MARKER_KEYS = frozenset({"type", "start_timestamp", "stop_timestamp", "flags", "timestamp"})
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


def render(content: Any, where: str, tools: ToolNames | None = None) -> Rendered:
    """Render a content value: a string, a list of parts/blocks, or one block."""
    tools = tools if tools is not None else ToolNames()
    out = Rendered()
    if isinstance(content, list):
        for index, part in enumerate(content):
            _part(part, f"{where}[{index}]", tools, out)
    else:
        _part(content, where, tools, out)
    return out


def tool_call(name: Any, args: Any) -> str:
    return f"[tool call: {name if isinstance(name, str) and name else '?'}({_args(args)})]"


def tool_result(name: str | None, text: str, *, error: bool = False) -> str:
    label = "tool error" if error else "tool result"
    head = f"[{label}: {name}]" if name else f"[{label}]"
    return f"{head} {text}".rstrip()


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


def _part(part: Any, where: str, tools: ToolNames, out: Rendered) -> None:
    if part is None:
        return
    if isinstance(part, str):
        out.add(part)
        return
    if isinstance(part, bool) or not isinstance(part, (Mapping, int, float)):
        out.add(f"[{json_type(part)}]")
        out.warnings.append(f"{where}: a JSON {json_type(part)} shown as [{json_type(part)}]")
        return
    if not isinstance(part, Mapping):  # a number
        out.add(str(part))
        return
    kind = part.get("type")
    handler = _TYPED.get(kind) if isinstance(kind, str) else None
    if handler is not None:
        handler(part, where, tools, out)
        return
    if kind is None and _untyped(part, tools, out):
        return
    if isinstance(kind, str) and set(part) <= _MARKER_KEYS:
        return  # a marker: nothing to read in it
    name = kind if isinstance(kind, str) and kind else part.get("content_type")
    unknown(name if isinstance(name, str) and name else "part", where, out)


Handler = Callable[[Mapping[str, Any], str, ToolNames, Rendered], None]


def _text(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    text = part.get("text", part.get("value"))  # LLaMA-Factory parts say "value"
    if isinstance(text, Mapping):  # Assistants API: {"text": {"value": ...}}
        text = text.get("value")
    if isinstance(text, str):
        out.add(text)


def _refusal(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    text = part.get("refusal") or part.get("text")
    out.add(text if isinstance(text, str) else "[refusal]")


def _image(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    url = part.get("image_url") or part.get("url")
    if isinstance(url, Mapping):
        url = url.get("url")
    source = part.get("source")
    if url is None and isinstance(source, Mapping):  # Anthropic: {"type": "url", "url": ...}
        url = source.get("url")
    out.add(image(url))


def _audio(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    out.add("[audio]")


def _voice(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    transcript = part.get("transcript") or part.get("text")
    out.add(f"[voice note] {transcript}" if isinstance(transcript, str) else "[voice note]")


def _file(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    nested = part.get("file")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else part
    name = inner.get("filename") or inner.get("title") or inner.get("name") or part.get("title")
    source = part.get("source")
    mime = (
        part.get("mediaType")
        or part.get("mime_type")
        or inner.get("mime_type")
        or (source.get("media_type") if isinstance(source, Mapping) else None)
    )
    url = part.get("url") or part.get("file_url")
    out.add(attachment(name, mime, url))


def _tool_use(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    nested = part.get("tool_call")
    if isinstance(nested, Mapping):  # LibreChat: the call holds its own output
        _librechat_call(nested, tools, out)
        return
    if "name" not in part and isinstance(part.get("value"), str):  # LLaMA-Factory v1
        try:
            decoded = json.loads(part["value"])
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping):
            out.add(tools.call(None, decoded.get("name"), decoded.get("arguments")))
            return
    args = part.get("input", part.get("args", part.get("arguments")))
    out.add(tools.call(part.get("id"), part.get("name"), args))


def _librechat_call(call: Mapping[str, Any], tools: ToolNames, out: Rendered) -> None:
    out.add(tools.call(call.get("id"), call.get("name"), call.get("args")))
    output = call.get("output")
    if output is not None:
        name = tools.result_name(call.get("id"), call.get("name"))
        out.result(tool_result(name, args_text(output).strip()))


def _tool_result(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    inner = render(part.get("content"), f"{where}.content", tools)
    out.warnings.extend(inner.warnings)
    name = tools.result_name(part.get("tool_use_id"), part.get("name"))
    out.result(tool_result(name, inner.text.strip(), error=part.get("is_error") is True))


def _search_result(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    url = part.get("url") or part.get("source")
    out.add(search_result(part.get("title"), url))


def _thinking(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    for key in ("thinking", "reasoning", "text", "think", "value"):
        if isinstance(part.get(key), str):
            out.add(thinking(part[key]))
            return
    out.add(thinking(None))


def _redacted_thinking(
    part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered
) -> None:
    out.add("[thinking: redacted]")


_TYPED: dict[str, Handler] = {
    "text": _text,
    "input_text": _text,
    "output_text": _text,
    "summary_text": _text,
    "refusal": _refusal,
    "image_url": _image,
    "input_image": _image,
    "image": _image,
    "image_file": _image,
    "input_audio": _audio,
    "audio": _audio,
    "voice_note": _voice,
    "file": _file,
    "input_file": _file,
    "document": _file,
    "tool_use": _tool_use,
    "server_tool_use": _tool_use,
    "mcp_tool_use": _tool_use,
    "tool_call": _tool_use,
    "tool_result": _tool_result,
    "web_search_tool_result": _tool_result,
    "mcp_tool_result": _tool_result,
    "knowledge": _search_result,
    "web_search_result": _search_result,
    "search_result": _search_result,
    "thinking": _thinking,
    "reasoning": _thinking,
    "think": _thinking,
    "redacted_thinking": _redacted_thinking,
}


def _untyped(part: Mapping[str, Any], tools: ToolNames, out: Rendered) -> bool:
    """Gemini parts ({"text"}, {"inlineData"}, {"functionCall"}, ...) and ChatGPT's
    multimodal parts carry no "type"; recognise them by their one key."""
    if isinstance(part.get("text"), str):
        text = part["text"]
        out.add(thinking(text) if part.get("thought") is True else text)
        return True
    for key in ("inlineData", "inline_data", "fileData", "file_data"):
        data = part.get(key)
        if isinstance(data, Mapping):
            mime = data.get("mimeType") or data.get("mime_type")
            uri = data.get("fileUri") or data.get("file_uri")
            name = data.get("displayName") or data.get("display_name")
            out.add(image(uri) if not mime else attachment(name, mime, uri))
            return True
    for key in ("functionCall", "function_call"):
        call = part.get(key)
        if isinstance(call, Mapping):
            out.add(tools.call(call.get("id"), call.get("name"), call.get("args")))
            return True
    for key in ("functionResponse", "function_response"):
        response = part.get(key)
        if isinstance(response, Mapping):
            name = tools.result_name(response.get("id"), response.get("name"))
            out.result(tool_result(name, args_text(response.get("response")).strip()))
            return True
    for key in ("executableCode", "executable_code"):
        code = part.get(key)
        if isinstance(code, Mapping):
            out.add(code_block(code.get("code"), code.get("language")))
            return True
    for key in ("codeExecutionResult", "code_execution_result"):
        result = part.get(key)
        if isinstance(result, Mapping):
            outcome, output = result.get("outcome"), result.get("output")
            head = f"[code result: {outcome}]" if isinstance(outcome, str) else "[code result]"
            out.add(f"{head} {output if isinstance(output, str) else ''}".rstrip())
            return True
    kind = part.get("content_type")
    if kind == "image_asset_pointer" or (kind is None and "asset_pointer" in part):
        out.add(image())  # ChatGPT: an uploaded or generated image, by file pointer
        return True
    return False
