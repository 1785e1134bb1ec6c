"""The shipped evaluation templates, as an annotator sees them: real Label Studio, real browser.

Label Studio accepts any config that parses, so only the labeling page shows whether a
template works: `<Chat>` (enterprise.xml) is accepted by Community 1.23.2 and then fails
to render there, which is why community.xml exists. These tests create the projects the
way a user does (`labelsync init-project`, `labelsync backfill`), log in through the login
page, annotate in headless Chromium and read the annotation back through the API.

What Label Studio 1.23.2 needs, found by driving it (the selectors below rely on it):
- a message becomes a region through its "Label whole utterance" button (enabled once a
  label is picked); clicking the message text does not label it, and Paragraphs has no
  `granularity`, so a text selection labels only the selected characters;
- the per-message controls (`visibleWhen="region-selected" whenLabelValue=...`) show once
  the region is selected, by clicking its highlighted text;
- a label picked while a region is selected relabels that region: Esc unselects it first.
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
from tests.support.corpus import write_corpus

pytestmark = [pytest.mark.browser, pytest.mark.labelstudio]

LABELSYNC = [sys.executable, "-m", "labelsync.cli"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
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
    label_studio: Any, tmp_path: Path, template: str, conversations: int
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
    synced = _labelsync(
        ["backfill", str(root)], {**env, "LABEL_STUDIO_PROJECT_ID": str(project_id)}
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    project = SimpleNamespace(url=label_studio.url, token=label_studio.legacy_token, id=project_id)
    tasks = sorted(project_tasks(project), key=lambda task: task["id"])
    assert len(tasks) == conversations
    return project_id, tasks


# -- the browser ------------------------------------------------------------------------
@pytest.fixture
def page(label_studio: Any) -> Iterator[Any]:
    """A page logged in to Label Studio through its login form, like an annotator."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
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


def stars(page: Any, header: str, count: int) -> Any:
    """The `count`-th star of the Rating placed right after the Header `header`."""
    return page.locator(
        f"xpath=//*[normalize-space()='{header}']/following-sibling::div[1]"
        f"//ul[contains(@class, 'ant-rate')]//*[@role='radio'][@aria-posinset='{count}']"
    )


def textarea_after(page: Any, header: str) -> Any:
    return page.locator(
        f"xpath=//*[normalize-space()='{header}']/following-sibling::*[1]//textarea"
    )


def unselect_labels(page: Any) -> None:
    """Leave no label armed: the next one picked must start a region of its own."""
    from playwright.sync_api import expect

    for armed in page.locator(".lsf-labels .lsf-label.lsf-label_selected").all():
        armed.click()
    expect(page.locator(".lsf-labels .lsf-label.lsf-label_selected")).to_have_count(0)


def mark_message(page: Any, index: int, label: str) -> Any:
    """Label the whole message `index` with `label`, then select the new region.
    Returns the message's element."""
    from playwright.sync_api import expect

    label_button = page.locator(".lsf-labels .lsf-label").filter(
        has=page.locator(".lsf-label__text", has_text=re.compile(f"^{re.escape(label)}$"))
    )
    label_button.click()
    expect(label_button).to_have_class(re.compile(r"\blsf-label_selected\b"))
    message = page.locator(f'[data-testid="phrase:{index}"]')
    whole = message.get_by_role("button", name="Label whole utterance", exact=True)
    expect(whole).to_be_enabled()
    whole.click()
    highlight = message.locator(".htx-highlight").first
    expect(highlight).to_be_visible()
    highlight.click()  # select the region: its per-message controls show
    return message


# -- the tests ----------------------------------------------------------------------------
def test_community_template_evaluates_a_conversation_and_its_messages(label_studio, page, tmp_path):
    from playwright.sync_api import expect

    project_id, tasks = synced_project(label_studio, tmp_path, "community", conversations=2)
    task = tasks[0]
    chat = task["data"]["chat"]
    user_at = next(i for i, m in enumerate(chat) if m["role"] == "user")
    assistant_at = next(i for i, m in enumerate(chat) if m["role"] == "assistant")

    open_task(page, label_studio.url, project_id, task["id"])

    # The dialogue renders, message by message, in order.
    expect(page.locator('[data-testid="phrase:0"]')).to_be_visible(timeout=LOAD_MS)
    for i, message in enumerate(chat):
        shown = page.locator(f'[data-testid="phrase:{i}"]')
        expect(shown).to_contain_text(message["content"])
        expect(shown).to_contain_text(message["role"])
    expect(page.get_by_text(f"Conversation {task['data']['thread_id']}, version 1")).to_be_visible()
    # ... and the config is not rejected by this edition.
    expect(page.get_by_text("ConfigurationError")).to_have_count(0)
    expect(page.get_by_text("Not expecting tag")).to_have_count(0)
    assert not [e for e in page.console_errors if "ConfigurationError" in e], page.console_errors

    # The conversation as a whole.
    conversation_rating = stars(page, "Overall quality of this conversation", 5)
    conversation_rating.click()
    expect(conversation_rating).to_have_attribute("aria-checked", "true")
    page.get_by_role("radio", name=re.compile(r"^Partly")).check()
    textarea_after(page, "Comment on the conversation (optional)").fill("Polite and on topic.")

    # Nothing per message shows before a message is selected.
    expect(page.get_by_text("What is the user doing?", exact=True)).to_be_hidden()
    expect(page.get_by_text("Clarity", exact=True)).to_be_hidden()

    # A user message: classified, and only the user controls show.
    mark_message(page, user_at, "User message")
    expect(page.get_by_text("What is the user doing?", exact=True)).to_be_visible()
    expect(page.get_by_text("Clarity", exact=True)).to_be_hidden()
    page.get_by_role("radio", name=re.compile(r"^Question")).check()
    # Done with it, as the template says: Esc unselects it (a label picked while it is
    # selected would relabel it instead of starting a new region).
    page.keyboard.press("Escape")
    expect(page.get_by_text("What is the user doing?", exact=True)).to_be_hidden()
    unselect_labels(page)

    # An assistant message: rated, and only the assistant controls show.
    mark_message(page, assistant_at, "Assistant message")
    expect(page.get_by_text("Clarity", exact=True)).to_be_visible()
    expect(page.get_by_text("What is the user doing?", exact=True)).to_be_hidden()
    clarity = stars(page, "Clarity", 4)
    clarity.click()
    expect(clarity).to_have_attribute("aria-checked", "true")
    accuracy = stars(page, "Accuracy", 3)
    accuracy.click()
    expect(accuracy).to_have_attribute("aria-checked", "true")
    page.get_by_role("checkbox", name=re.compile(r"^Too formal")).check()
    textarea_after(page, "Comment on this message (optional)").fill("Correct, a bit stiff.")
    expect(conversation_rating).to_have_attribute("aria-checked", "true")  # still there

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator('[data-testid="phrase:0"]').scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "labeling.png"))

    with page.expect_response(
        lambda r: r.request.method == "POST" and f"/api/tasks/{task['id']}/annotations" in r.url,
        timeout=LOAD_MS,
    ) as posted:
        page.get_by_test_id("bottombar-submit-button").click()
    assert posted.value.status == 201, posted.value.text()

    # What Label Studio stored, read through the API.
    response = httpx.get(
        f"{label_studio.url}/api/tasks/{task['id']}/annotations/",
        headers={"Authorization": f"Token {label_studio.legacy_token}"},
        timeout=60,
    )
    response.raise_for_status()
    (annotation,) = response.json()
    result = annotation["result"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for item in result:
        by_name.setdefault(item["from_name"], []).append(item)

    (rating,) = by_name["rating"]
    assert (rating["type"], rating["to_name"], rating["value"]["rating"]) == ("rating", "chat", 5)
    assert by_name["answered"][0]["value"]["choices"] == ["Partly"]
    assert by_name["conversation_comment"][0]["value"]["text"] == ["Polite and on topic."]

    regions = {item["value"]["paragraphlabels"][0]: item for item in by_name["message"]}
    assert set(regions) == {"User message", "Assistant message"}
    assistant = regions["Assistant message"]
    assert assistant["type"] == "paragraphlabels"
    assert assistant["value"]["start"] == assistant["value"]["end"] == str(assistant_at)
    assert assistant["value"]["text"] == chat[assistant_at]["content"]  # the whole message
    user = regions["User message"]
    assert user["value"]["start"] == str(user_at)
    assert user["value"]["text"] == chat[user_at]["content"]

    def of_region(name: str, region: dict[str, Any]) -> dict[str, Any]:
        (item,) = [i for i in by_name[name] if i["id"] == region["id"]]
        return item["value"]

    assert of_region("clarity", assistant)["rating"] == 4
    assert by_name["clarity"][0]["type"] == "rating"
    assert of_region("accuracy", assistant)["rating"] == 3
    assert of_region("tone", assistant)["choices"] == ["Too formal"]
    assert of_region("message_comment", assistant)["text"] == ["Correct, a bit stiff."]
    assert of_region("user_intent", user)["choices"] == ["Question"]
    assert rating["id"] not in {assistant["id"], user["id"]}  # the conversation's, not a message's


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
