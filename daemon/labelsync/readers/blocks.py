"""Content blocks of every family, rendered in the convention of labelsync.readers.parts.

`render` takes a content value (a string, a list of parts or blocks, one block)
and dispatches each block by its `type`: OpenAI parts (`text`, `image_url`,
`input_audio`, `file`), Anthropic blocks (`tool_use`, `tool_result`,
`thinking`, `document`, search results), the Responses API's `input_*` /
`output_text`, LibreChat's `think` and `tool_call` (its output inside the
call), LLaMA-Factory's `value` parts, claude.ai's `knowledge` and
`voice_note`. Parts without a `type` are Gemini's (`text`, `inlineData`,
`functionCall`, `functionResponse`, `executableCode`, ...) or ChatGPT's image
pointers, recognised by their key. Anything else is `[TYPE]` plus a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from labelsync.contract import json_type
from labelsync.readers.parts import (
    Rendered,
    ToolNames,
    args_text,
    attachment,
    code_block,
    image,
    search_result,
    thinking,
    tool_result,
    unknown,
)

# Blocks made only of these keys mark a moment in the UI (step starts, token budgets).
_MARKER_KEYS = frozenset({"type", "start_timestamp", "stop_timestamp", "flags", "timestamp"})


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
        out.result(tool_result(name, args_text(output)))


def _tool_result(part: Mapping[str, Any], where: str, tools: ToolNames, out: Rendered) -> None:
    inner = render(part.get("content"), f"{where}.content", tools)
    out.warnings.extend(inner.warnings)
    name = tools.result_name(part.get("tool_use_id"), part.get("name"))
    out.result(tool_result(name, inner.text, error=part.get("is_error") is True))


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
            out.result(tool_result(name, args_text(response.get("response"))))
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
