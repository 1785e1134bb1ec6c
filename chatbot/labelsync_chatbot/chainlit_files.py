"""What Chainlit shows from its app root: the Readme and the login form's words.

Chainlit reads `chainlit.md` (the Readme button) and `.chainlit/translations/*.json`
from CHAINLIT_APP_ROOT, and writes its stock versions there when they are
missing: a Readme that greets "Developer", a login form asking for an "Email
address". `prepare_app_root` puts this chat's own words in their place, but only
where Chainlit's stock text is (or nothing is): an operator's own edits stay.

The texts live here rather than in data files so they ship in any install of
the package without package-data settings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from labelsync_chatbot.login import WRONG_LOGIN

log = logging.getLogger("labelsync_chatbot")

CHAT_README = """\
# About this chat

You are chatting with an AI assistant. It can be wrong: check anything that matters.

## Your conversation is saved

After every reply, your message and the reply are saved, so that the people who
work on this assistant can read conversations and judge the answers. Please do
not write anything you would not want them to read, such as passwords or
personal details.

## Choosing a model

The gear next to the message box opens the chat settings, where you pick the
model that answers. The chat says when the model changes, and each saved reply
remembers which model wrote it.

## Rating replies

When thumbs are shown under a reply, they rate that reply; a thumbs down asks
what was wrong. Your ratings are saved with the conversation. Notices from the
chat itself (an error, a note that the model changed) are not part of the
conversation and cannot be rated.

## When something goes wrong

If the assistant is unavailable, or stops in the middle of a reply, nothing of
that attempt is kept. Send your message again when you are ready; it is saved
once, with the reply that worked.

## Ending a conversation

When you are done, press **End conversation** under the latest message, or type
`/end`. If you write again afterwards, the same conversation goes on. The pencil
icon at the top starts a new conversation.

## Coming back later

If your earlier chats are listed on the left (after you signed in), open one to
continue where you left off.
"""

# Chainlit 2.12's English login form, in our words. "unauthorized" is the key
# the form looks up after a refused login (it lower-cases the HTTP status text).
LOGIN_WORDS = {
    ("auth", "login", "form", "email", "label"): "User name",
    ("auth", "login", "form", "email", "placeholder"): "your user name",
    ("auth", "login", "form", "email", "required"): "user name is a required field",
    ("auth", "login", "errors", "unauthorized"): WRONG_LOGIN,
    ("auth", "login", "errors", "credentialssignin"): WRONG_LOGIN,
}
TRANSLATION = "en-US.json"


def prepare_app_root(root: Path, stock_readme: str, stock_translations: Path) -> None:
    """Write the chat's Readme and login words into Chainlit's app root where
    Chainlit's stock ones are. `stock_readme` and `stock_translations` are what
    the installed Chainlit ships (passed in, so this needs no Chainlit)."""
    readme = root / "chainlit.md"
    if not readme.exists() or readme.read_text(encoding="utf-8") == stock_readme:
        readme.parent.mkdir(parents=True, exist_ok=True)
        readme.write_text(CHAT_README, encoding="utf-8")
    else:
        log.info("keeping the operator's own %s", readme)

    target = root / ".chainlit" / "translations" / TRANSLATION
    stock = _read_json(stock_translations / TRANSLATION)
    current = _read_json(target) if target.exists() else stock
    changed = False
    for path, words in LOGIN_WORDS.items():
        if _get(current, path) == _get(stock, path) and _get(current, path) != words:
            _set(current, path, words)
            changed = True
    if changed:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(current, ensure_ascii=False, indent=4), encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _set(tree: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
