"""Google AI Studio saved prompt (the Drive file): `chunkedPrompt.chunks`.

- Each chunk is one piece of one turn: an uploaded image (`driveImage`) and
  the question typed under it are two `user` chunks; the model's thoughts
  (`isThought`) and its answer are two `model` chunks. Consecutive chunks of
  one role are one turn, so they are merged.
- Newer files repeat a chunk's `text` in `parts`: `text` is read, `parts`
  only when there is no `text` (function calls and the like).
- `pendingInputs` is what was typed but never sent: not part of the dialogue.
- The file has no id (nor, as Drive saves it, an extension): it is named by
  its file name, like any one-conversation file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.contract import InvalidConversation, Message
from labelsync.readers import blocks, parts
from labelsync.readers.base import (
    Draft,
    Options,
    Reader,
    array,
    need_list,
    obj,
    string,
    time_or_none,
)

# Uploads are Drive files known by id only, or inline data.
_MEDIA = {
    "driveImage": "[image]",
    "inlineImage": "[image]",
    "driveDocument": "[file]",
    "inlineDocument": "[file]",
    "driveVideo": "[video]",
    "driveAudio": "[audio]",
    "inlineAudio": "[audio]",
}
_ROLES = {"user": "user", "model": "assistant", "system": "system"}


def matches(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("chunkedPrompt"), Mapping)


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    chunks = need_list(obj(doc.get("chunkedPrompt")).get("chunks"), "chunkedPrompt.chunks")
    draft = Draft(messages=[], shape="aistudio-prompt", final=True)
    model = string(obj(doc.get("runSettings")).get("model"))
    draft.model = model.removeprefix("models/") if model else None
    system = _system(doc.get("systemInstruction"))
    if system:
        draft.messages.append(Message("system", system))
    tools = parts.ToolNames()
    for index, chunk in enumerate(chunks):
        chunk = obj(chunk)
        raw_role = chunk.get("role")
        if not isinstance(raw_role, str):
            raise InvalidConversation(f'chunkedPrompt.chunks[{index}] has no "role" string')
        role = _ROLES.get(raw_role, raw_role)
        rendered = _chunk(chunk, f"chunkedPrompt.chunks[{index}]", tools)
        draft.warnings.extend(rendered.warnings)
        when = time_or_none(chunk.get("createTime"))
        for part_role, text in parts.split(role, rendered):
            previous = draft.messages[-1] if draft.messages else None
            if previous is not None and previous.role == part_role != "tool":
                # One turn stored as several chunks (an image and its question).
                draft.messages[-1] = Message(
                    part_role,
                    f"{previous.content}\n{text}",
                    previous.timestamp,
                    model=previous.model,
                )
                continue
            reply = draft.model if part_role == "assistant" else None
            draft.messages.append(Message(part_role, text, timestamp=when, model=reply))
    return draft


def _system(value: Any) -> str:
    """`{"text": ...}` in most files, `{"parts": [{"text": ...}]}` in some."""
    if isinstance(value, str):
        return value.strip()
    value = obj(value)
    if isinstance(value.get("text"), str):
        return str(value["text"]).strip()
    return blocks.render(array(value.get("parts")), "systemInstruction").text.strip()


def _chunk(chunk: Mapping[str, Any], where: str, tools: parts.ToolNames) -> parts.Rendered:
    out = parts.Rendered()
    for key, placeholder in _MEDIA.items():
        if key in chunk:
            out.add(placeholder)
    if isinstance(chunk.get("youtubeVideo"), Mapping):
        url = obj(chunk["youtubeVideo"]).get("url")
        out.add(f"[video: {url}]" if isinstance(url, str) else "[video]")
    text = chunk.get("text")
    if isinstance(text, str):
        out.add(parts.thinking(text) if chunk.get("isThought") is True else text)
    elif "parts" in chunk:
        out.extend(blocks.render(array(chunk.get("parts")), f"{where}.parts", tools))
    elif not out.segments:
        known = [k for k in chunk if k not in ("role", "tokenCount", "createTime", "finishReason")]
        rendered = blocks.render(dict(chunk), where, tools) if known else parts.Rendered()
        out.extend(rendered)
    return out


READER = Reader("aistudio", matches, read)
