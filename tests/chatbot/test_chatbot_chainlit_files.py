"""chatbot/labelsync_chatbot/chainlit_files.py: this chat's Readme and login words,
put where Chainlit's stock ones are, and nowhere an operator wrote their own."""

from __future__ import annotations

import json
from pathlib import Path

from chainlit.config import TRANSLATIONS_DIR
from chainlit.markdown import DEFAULT_MARKDOWN_STR

from labelsync_chatbot.chainlit_files import CHAT_README, prepare_app_root

STOCK = Path(TRANSLATIONS_DIR)


def login_form(root: Path) -> dict:
    data = json.loads((root / ".chainlit" / "translations" / "en-US.json").read_text())
    return data["auth"]["login"]


def stock_app_root(root: Path) -> None:
    """What `chainlit run` leaves in a new app root before it loads the app."""
    (root / ".chainlit" / "translations").mkdir(parents=True)
    for file in STOCK.glob("*.json"):
        (root / ".chainlit" / "translations" / file.name).write_text(file.read_text())
    (root / "chainlit.md").write_text(DEFAULT_MARKDOWN_STR)


def test_stock_readme_and_login_words_are_replaced(tmp_path):
    stock_app_root(tmp_path)
    prepare_app_root(tmp_path, DEFAULT_MARKDOWN_STR, STOCK)
    readme = (tmp_path / "chainlit.md").read_text()
    assert readme == CHAT_README and "Developer" not in readme
    form = login_form(tmp_path)
    assert form["form"]["email"]["label"] == "User name"
    assert form["errors"]["unauthorized"] == "Wrong user name or password."
    # The rest of Chainlit's words are untouched.
    assert form["form"]["password"]["label"] == "Password"
    german = json.loads((tmp_path / ".chainlit" / "translations" / "de-DE.json").read_text())
    assert german == json.loads((STOCK / "de-DE.json").read_text())


def test_an_empty_app_root_gets_them_too(tmp_path):
    prepare_app_root(tmp_path / "new", DEFAULT_MARKDOWN_STR, STOCK)
    assert (tmp_path / "new" / "chainlit.md").read_text() == CHAT_README
    assert login_form(tmp_path / "new")["form"]["email"]["label"] == "User name"


def test_an_operators_own_readme_and_words_are_kept(tmp_path):
    stock_app_root(tmp_path)
    (tmp_path / "chainlit.md").write_text("# Our support bot\n")
    path = tmp_path / ".chainlit" / "translations" / "en-US.json"
    words = json.loads(path.read_text())
    words["auth"]["login"]["form"]["email"]["label"] = "Staff number"
    path.write_text(json.dumps(words))
    prepare_app_root(tmp_path, DEFAULT_MARKDOWN_STR, STOCK)
    assert (tmp_path / "chainlit.md").read_text() == "# Our support bot\n"
    form = login_form(tmp_path)
    assert form["form"]["email"]["label"] == "Staff number"
    assert form["errors"]["unauthorized"] == "Wrong user name or password."


def test_preparing_twice_changes_nothing(tmp_path):
    stock_app_root(tmp_path)
    prepare_app_root(tmp_path, DEFAULT_MARKDOWN_STR, STOCK)
    first = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    prepare_app_root(tmp_path, DEFAULT_MARKDOWN_STR, STOCK)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == first
