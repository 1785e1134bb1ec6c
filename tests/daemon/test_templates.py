"""The shipped evaluation templates, as an annotator sees them: real Label Studio, real browser.

Label Studio accepts any config that parses, so only the labeling page shows whether a
template works: `<Chat>` (enterprise.xml) is accepted by Community 1.23.2 and then fails
to render there, which is why community.xml exists. These tests create the projects the
way a user does (`labelsync init-project`, `labelsync backfill`), log in through the login
page, annotate in headless Chromium with the mouse only and read the annotation back
through the API.

What Label Studio 1.23.2 needs, found by driving it (the selectors below rely on it):
- each message is a row (`.ls-item`) of the <Repeater>: the message rendered by labelsync
  (`.ls-msg[data-index=N]`) and its controls (`.ls-ctl`);
- a Rating is an `ul.ant-rate` of `role=radio` stars; a Choice is a `role=radio` whose
  name may end in an automatic hotkey hint ("Too formal[0]").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import project_tasks
from tests.support.browser import ARTIFACTS, chromium
from tests.support.corpus import rich_conversation, write_atomic, write_corpus

pytestmark = [pytest.mark.browser, pytest.mark.labelstudio]

LABELSYNC = [sys.executable, "-m", "labelsync.cli"]
LOAD_MS = 120_000
"""Generous: the first page load builds Label Studio's frontend caches."""
STEP_MS = 30_000


# -- project set-up through the CLI -------------------------------------------------------
def _env(label_studio: Any, tmp_path: Path) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))
    }
    return {
        **base,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.legacy_token,
        "LABELSYNC_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
    }


def _labelsync(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABELSYNC, *args], env=env, capture_output=True, text=True, timeout=300)


def synced_project(
    label_studio: Any, tmp_path: Path, template: str, conversations: int, rich: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    """`labelsync init-project --template ...` then `labelsync backfill`: the project id
    and its tasks (oldest first), read straight from Label Studio."""
    label_studio.start()  # no-op unless an earlier test left it stopped
    env = _env(label_studio, tmp_path)
    created = _labelsync(
        ["init-project", "--template", template, "--title", f"labelsync template {template}"], env
    )
    assert created.returncode == 0, created.stderr
    project_id = int(created.stdout.strip())
    root = tmp_path / "conversations"
    write_corpus(root, conversations, prefix=template)
    if rich:
        write_atomic(root / "conversation_reset-token.json", rich_conversation())
    synced = _labelsync(
        ["backfill", str(root)], {**env, "LABEL_STUDIO_PROJECT_ID": str(project_id)}
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    project = SimpleNamespace(url=label_studio.url, token=label_studio.legacy_token, id=project_id)
    tasks = sorted(project_tasks(project), key=lambda task: task["id"])
    assert len(tasks) == conversations + rich
    return project_id, tasks


# -- the browser ------------------------------------------------------------------------
@pytest.fixture
def page(label_studio: Any) -> Iterator[Any]:
    """A page logged in to Label Studio through its login form, like an annotator."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.set_default_timeout(STEP_MS)
            page.console_errors = []  # type: ignore[attr-defined]
            page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
            page.goto(f"{label_studio.url}/user/login/", timeout=LOAD_MS)
            page.fill("#email", label_studio.username)
            page.fill("#password", label_studio.password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=LOAD_MS)
            expect(page.locator("#email")).to_have_count(0)
            yield page
        finally:
            browser.close()


def open_task(page: Any, url: str, project_id: int, task_id: int) -> None:
    page.goto(f"{url}/projects/{project_id}/data?task={task_id}", timeout=LOAD_MS)


def row(page: Any, index: int) -> Any:
    """Message `index` and its controls."""
    return page.locator(".ls-item").filter(has=page.locator(f'.ls-msg[data-index="{index}"]'))


def star(container: Any, nth_rating: int, value: int) -> Any:
    rating = container.locator("ul.ant-rate").nth(nth_rating)
    return rating.locator(f'[role="radio"][aria-posinset="{value}"]')


def radio(container: Any, label: str) -> Any:
    return container.get_by_role("radio", name=re.compile(rf"^{re.escape(label)}"))


def on_screen(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    return bool(box) and box["y"] >= 0 and box["y"] + 20 <= page.viewport_size["height"]


# -- the tests ----------------------------------------------------------------------------
def test_community_template_reads_well_and_rates_in_one_click_per_judgment(
    label_studio, page, tmp_path
):
    from playwright.sync_api import expect

    project_id, tasks = synced_project(
        label_studio, tmp_path, "community", conversations=1, rich=True
    )
    task = next(t for t in tasks if t["data"]["thread_id"] == "reset-token")
    chat = task["data"]["chat"]
    open_task(page, label_studio.url, project_id, task["id"])
    expect(page.locator(".ls-msg")).to_have_count(len(chat), timeout=LOAD_MS)
    expect(page.get_by_text("ConfigurationError")).to_have_count(0)
    expect(page.get_by_text("Not expecting tag")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labeling-top.png"))

    # A dialogue people can read: the code block keeps its lines and indentation, the
    # table is a table, lists are lists, and each message says who wrote it.
    code = row(page, 2).locator("pre code")
    assert code.inner_text().splitlines()[3:5] == [
        "def reset_token(user_id: int) -> str:",
        '    """A token the user gets by e-mail."""',
    ]
    expect(row(page, 4).locator("table tr")).to_have_count(4)
    expect(row(page, 6).locator(".ls-msg__body ol li")).to_have_count(4)
    expect(row(page, 6).locator(".ls-msg__body ul li")).to_have_count(2)
    expect(row(page, 2).locator(".ls-msg__head")).to_contain_text("llama3.2:latest")
    # The chat user's thumbs are on the message they are about.
    expect(row(page, 6).locator(".ls-fb--down")).to_contain_text("there is no Settings > Tokens")
    expect(row(page, 8).locator(".ls-fb--up")).to_contain_text("thumbs up")
    expect(row(page, 2).locator(".ls-fb")).to_have_count(0)

    # Controls fit the role: a user message can never get ratings, nor a reply a class.
    for m in chat:
        controls = row(page, m["index"])
        if m["role"] == "user":
            expect(controls.locator("ul.ant-rate")).to_have_count(0)
            expect(radio(controls, "Question")).to_have_count(1)
        elif m["role"] == "assistant":
            expect(controls.locator("ul.ant-rate")).to_have_count(2)
            expect(radio(controls, "Question")).to_have_count(0)
        else:
            expect(controls.locator(".ls-ctl ul.ant-rate, .ls-ctl [role=radio]")).to_have_count(0)

    # One click per judgment, with the mouse only.
    conversation = page.locator(".ls-conv")
    star(conversation, 0, 4).click()
    radio(conversation, "Partly").click()
    reply = row(page, 6)
    reply.scroll_into_view_if_needed()
    star(reply, 0, 4).click()  # clarity
    star(reply, 1, 2).click()  # accuracy
    radio(reply, "Appropriate").click()
    radio(row(page, 7), "Complaint").click()
    expect(star(reply, 0, 4)).to_have_attribute("aria-checked", "true")
    expect(star(reply, 1, 2)).to_have_attribute("aria-checked", "true")
    assert on_screen(page, conversation.locator("ul.ant-rate")), "the overall rating scrolled away"
    page.screenshot(path=str(ARTIFACTS / "labeling-rated.png"))

    with page.expect_response(
        lambda r: r.request.method == "POST" and f"/api/tasks/{task['id']}/annotations" in r.url,
        timeout=LOAD_MS,
    ) as posted:
        page.get_by_test_id("bottombar-submit-button").click()
    assert posted.value.status == 201, posted.value.text()

    response = httpx.get(
        f"{label_studio.url}/api/tasks/{task['id']}/annotations/",
        headers={"Authorization": f"Token {label_studio.legacy_token}"},
        timeout=60,
    )
    response.raise_for_status()
    (annotation,) = response.json()
    results = {item["from_name"]: item for item in annotation["result"]}
    # Every per-message judgment names its message by index, and says which judgment it is.
    assert (results["rating"]["to_name"], results["rating"]["value"]["rating"]) == ("chat", 4)
    assert results["answered"]["value"]["choices"] == ["Partly"]
    assert (results["clarity_6"]["to_name"], results["clarity_6"]["value"]["rating"]) == (
        "msg_6",
        4,
    )
    assert results["accuracy_6"]["value"]["rating"] == 2
    assert results["tone_6"]["value"]["choices"] == ["Appropriate"]
    assert results["intent_7"]["value"]["choices"] == ["Complaint"]
    assert not {name for name in results if name.endswith(("_7", "_1", "_3", "_5"))} - {"intent_7"}


def test_the_data_manager_shows_the_useful_columns_not_the_raw_dialogue(
    label_studio, page, tmp_path
):
    project_id, _ = synced_project(label_studio, tmp_path, "community", conversations=2)
    page.goto(f"{label_studio.url}/projects/{project_id}/data", timeout=LOAD_MS)
    page.locator(".lsf-th-content").first.wait_for(timeout=LOAD_MS)
    page.wait_for_timeout(1000)  # the header row fills in column by column
    headers = [t.strip() for t in page.locator(".lsf-th-content").all_inner_texts()]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "data-manager.png"))
    for column in ("thread_id", "version", "latest", "turn_count", "model", "feedback"):
        assert column in headers, headers
    for column in ("chat", "sync_key", "source_file", "session_id"):
        assert column not in headers, headers
    assert headers.index("thread_id") < headers.index("version") < headers.index("feedback")


def test_enterprise_template_does_not_render_in_community(label_studio, page, tmp_path):
    """Why community.xml exists: Community 1.23.2 accepts the <Chat> config, then the
    labeling page shows a configuration error instead of the conversation."""
    from playwright.sync_api import expect

    project_id, tasks = synced_project(label_studio, tmp_path, "enterprise", conversations=1)
    open_task(page, label_studio.url, project_id, tasks[0]["id"])

    expect(page.get_by_text("ConfigurationError: Not expecting tag: chat")).to_be_visible(
        timeout=LOAD_MS
    )
    expect(page.locator('[data-testid^="phrase:"]')).to_have_count(0)
    expect(page.get_by_text(tasks[0]["data"]["chat"][1]["content"], exact=True)).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labeling-enterprise.png"))
