"""`labelsync export` against a real Label Studio: a project made the way a user makes it
(`init-project`, `backfill`), annotations posted through the API by two annotators, and
the JSON Lines read back exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import LABELSYNC, project_tasks, run
from tests.daemon.test_annotations import EARLIER_TEMPLATE, choices, rating, text
from tests.support.corpus import conversation, rich_conversation, write_atomic, write_corpus
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.labelstudio import create_project

pytestmark = pytest.mark.labelstudio

SECOND = "second.annotator@example.com"


@dataclass
class Project:
    id: int
    url: str
    token: str
    env: dict[str, str]
    tasks: dict[str, dict[str, Any]]  # thread_id -> its task (latest version)
    first: int  # annotator ids
    second: int

    def annotate(self, thread: str, result: list[dict[str, Any]], by: int | None = None) -> None:
        task_id = self.tasks[thread]["id"]
        body: dict[str, Any] = {"result": result}
        if by is not None:
            body["completed_by"] = by
        response = httpx.post(
            f"{self.url}/api/tasks/{task_id}/annotations/",
            json=body,
            headers={"Authorization": f"Token {self.token}"},
            timeout=60,
        )
        assert response.status_code == 201, response.text

    def export(self, *args: str) -> tuple[list[dict[str, Any]], str, int]:
        result = run(["export", *args], self.env)
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return rows, result.stderr, result.returncode


def users(url: str, token: str) -> dict[str, int]:
    response = httpx.get(
        f"{url}/api/users/", headers={"Authorization": f"Token {token}"}, timeout=60
    )
    response.raise_for_status()
    return {u["email"]: u["id"] for u in response.json()}


def second_annotator(url: str, token: str) -> int:
    """A second user in the organization (Label Studio's API makes one; once a session)."""
    known = users(url, token)
    if SECOND not in known:
        httpx.post(
            f"{url}/api/users/",
            json={"email": SECOND, "username": SECOND, "first_name": "Second"},
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        ).raise_for_status()
        known = users(url, token)
    return known[SECOND]


def synced(env: dict[str, str], template: str = "community", corpus: int = 5) -> Project:
    """init-project + backfill of `corpus` conversations and rich_conversation()."""
    created = run(["init-project", "--template", template, "--title", "export"], env)
    assert created.returncode == 0, created.stderr
    project_id = int(created.stdout.strip())
    env = {**env, "LABEL_STUDIO_PROJECT_ID": str(project_id)}
    root = Path(env["LABELSYNC_WATCH_DIR"])
    write_corpus(root, corpus, prefix="exp")
    write_atomic(root / "conversation_reset-token.json", rich_conversation())
    synced = run(["backfill"], env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    url, token = env["LABEL_STUDIO_URL"], env["LABEL_STUDIO_API_KEY"]
    handle = type("P", (), {"url": url, "token": token, "id": project_id})
    tasks = {t["data"]["thread_id"]: t for t in project_tasks(handle)}
    me = users(url, token)
    first = next(i for e, i in me.items() if e != SECOND)
    return Project(project_id, url, token, env, tasks, first, second_annotator(url, token))


def rated(project: Project) -> Project:
    """Ratings whose exports are known in advance (see each test)."""
    project.annotate(
        "reset-token",
        [
            rating("rating", "chat", 4),
            choices("answered", "chat", "Partly"),
            rating("clarity_6", "msg_6", 4),
            rating("accuracy_6", "msg_6", 2),
            choices("tone_6", "msg_6", "Appropriate"),
            text("comment_6", "msg_6", "Step 3 names a menu that does not exist."),
            choices("intent_7", "msg_7", "Complaint"),
            rating("clarity_8", "msg_8", 5),
            rating("accuracy_8", "msg_8", 5),
        ],
    )
    project.annotate(
        "reset-token",
        [
            rating("rating", "chat", 5),
            rating("clarity_6", "msg_6", 3),
            rating("accuracy_6", "msg_6", 1),
            rating("clarity_8", "msg_8", 5),
            rating("accuracy_8", "msg_8", 4),
        ],
        by=project.second,
    )
    project.annotate("exp-7-000000", [rating("rating", "chat", 5)])
    project.annotate("exp-7-000001", [rating("rating", "chat", 3)])
    project.annotate("exp-7-000002", [rating("rating", "chat", 2)])
    project.annotate("exp-7-000002", [rating("rating", "chat", 4)], by=project.second)
    # exp-7-000003: not annotated
    project.annotate(
        "exp-7-000004", [rating("rating", "chat", 4), choices("tone_1", "msg_1", "Rude")]
    )
    return project


def dialogue(task: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in task["data"]["chat"]]


def test_sft_outputs_exactly_the_conversations_rated_at_least_4_with_their_dialogue(env):
    project = rated(synced(env))
    rows, counts, code = project.export("--format", "sft", "--min-rating", "4")
    assert code == 0, counts
    # Mean ratings: reset-token 4.5, exp-0 5, exp-1 3, exp-2 (2+4)/2 = 3, exp-4 4.
    expected = [dialogue(project.tasks[t]) for t in ("exp-7-000000", "exp-7-000004", "reset-token")]
    assert rows == [{"messages": m} for m in expected]
    assert rows[2]["messages"][2]["content"].startswith("Here is a helper:\n\n```python\n")
    assert "3 kept, 2 rated below --min-rating" in counts
    assert "5 annotated tasks read" in counts and "3 rows written" in counts

    rows, _, _ = project.export("--format", "sft", "--min-rating", "3")
    assert len(rows) == 5


def test_messages_has_a_row_per_judged_message_with_everything_needed_to_join_it_back(env):
    project = rated(synced(env))
    rows, counts, code = project.export("--format", "messages")
    assert code == 0, counts
    ours = [r for r in rows if r["thread_id"] == "reset-token"]
    by = {(r["annotator"], r["index"]): r for r in ours}
    assert sorted(by) == sorted(
        [
            ("labelsync@example.com", 6),
            ("labelsync@example.com", 7),
            ("labelsync@example.com", 8),
            (SECOND, 6),
            (SECOND, 8),
        ]
    )
    six = by[("labelsync@example.com", 6)]
    task = project.tasks["reset-token"]
    assert six == {
        "thread_id": "reset-token",
        "version": 1,
        "latest": True,
        "task_id": task["id"],
        "index": 6,
        "message_id": None,
        "role": "assistant",
        "text": task["data"]["chat"][6]["content"],
        "model": "llama3.2:latest",
        "clarity": 4,
        "accuracy": 2,
        "tone": ["Appropriate"],
        "comment": "Step 3 names a menu that does not exist.",
        "intent": None,
        "conversation_rating": 4,
        "answered": "Partly",
        "conversation_comment": None,
        "feedback": {"score": 0, "comment": "there is no Settings > Tokens menu", "at": None},
        "annotator": "labelsync@example.com",
        "annotator_id": project.first,
        "annotation_id": six["annotation_id"],
        "annotated_at": six["annotated_at"],
        "updated_at": six["updated_at"],
    }
    assert by[("labelsync@example.com", 7)]["intent"] == "Complaint"
    assert by[("labelsync@example.com", 7)]["role"] == "user"
    assert by[(SECOND, 6)]["annotator_id"] == project.second
    assert by[(SECOND, 8)]["feedback"]["score"] == 1
    rude = [r for r in rows if r["thread_id"] == "exp-7-000004"]
    assert [(r["index"], r["tone"]) for r in rude] == [(1, ["Rude"])]
    assert len(rows) == 6


def test_kto_labels_replies_from_ratings_then_thumbs(env):
    project = rated(synced(env))
    rows, counts, code = project.export("--format", "kto")
    assert code == 0, counts
    chat = dialogue(project.tasks["reset-token"])
    rude = dialogue(project.tasks["exp-7-000004"])
    # reset-token #6: min(mean clarity 3.5, mean accuracy 1.5) <= 2: undesirable;
    # #8: min(5, 4.5) >= 4: desirable; #2 and #4: neither judged nor thumbed.
    # exp-4 #1: called rude. Other conversations: no judgment, no thumbs.
    assert rows == [
        {"prompt": rude[:1], "completion": [rude[1]], "label": False},
        {"prompt": chat[:6], "completion": [chat[6]], "label": False},
        {"prompt": chat[:8], "completion": [chat[8]], "label": True},
    ]
    assert "1 desirable, 2 undesirable" in counts


def test_the_latest_annotated_version_speaks_for_its_conversation(env):
    project = synced(env, corpus=1)
    project.annotate("exp-7-000000", [rating("rating", "chat", 5)])
    root = Path(project.env["LABELSYNC_WATCH_DIR"])
    grown = conversation("exp-7-000000", 2, __import__("random").Random(1))
    (path,) = root.glob("conversation_exp-7-000000.json")
    document = json.loads(path.read_text())
    document["messages"] += grown["messages"]
    write_atomic(path, document)
    assert run(["backfill"], project.env).returncode == 0
    versions = sorted(
        (t["data"]["version"], t["id"])
        for t in project_tasks(
            type("P", (), {"url": project.url, "token": project.token, "id": project.id})
        )
        if t["data"]["thread_id"] == "exp-7-000000"
    )
    assert [v for v, _ in versions] == [1, 2]
    project.tasks["exp-7-000000"] = {"id": versions[1][1]}
    project.annotate("exp-7-000000", [rating("rating", "chat", 2)])

    rows, counts, _ = project.export("--format", "sft", "--min-rating", "4")
    assert rows == []  # version 2, rated 2, speaks for it; version 1's 5 does not
    assert "1 conversations (latest annotated version): 0 kept, 1 rated below" in counts
    rows, _, _ = project.export("--format", "messages")
    assert rows == []  # conversation ratings only: no message was judged


def test_a_project_made_with_the_earlier_template_exports_too(env, tmp_path):
    template = tmp_path / "earlier.xml"
    template.write_text(EARLIER_TEMPLATE)
    project = synced(env, template=str(template), corpus=0)
    region = {"from_name": "message", "to_name": "chat", "type": "paragraphlabels"}
    project.annotate(
        "reset-token",
        [
            rating("rating", "chat", 4),
            {
                **region,
                "id": "r1",
                "value": {"start": "6", "end": "6", "paragraphlabels": ["Assistant message"]},
            },
            {**rating("clarity", "chat", 2), "id": "r1"},
            {**rating("accuracy", "chat", 1), "id": "r1"},
            {**choices("tone", "chat", "Too formal", "Rude or dismissive"), "id": "r1"},
        ],
    )
    rows, counts, code = project.export("--format", "messages")
    assert code == 0, counts
    assert [(r["index"], r["clarity"], r["accuracy"], r["tone"]) for r in rows] == [
        (6, 2, 1, ["Too formal", "Rude or dismissive"])
    ]
    kto, _, _ = project.export("--format", "kto")
    assert [r["label"] for r in kto] == [False, True]  # #6 rated poorly; #8 thumbs up


def test_feedback_given_after_annotation_is_what_the_export_carries(env):
    project = rated(synced(env))
    task = project.tasks["reset-token"]
    meta = {
        **task["meta"],
        "labelsync": {
            **task["meta"]["labelsync"],
            "feedback": [
                {
                    "index": 6,
                    "role": "assistant",
                    "score": 1,
                    "comment": "ok now",
                    "at": "2026-11-26",
                }
            ],
        },
    }
    httpx.patch(
        f"{project.url}/api/tasks/{task['id']}",
        json={"meta": meta},
        headers={"Authorization": f"Token {project.token}"},
        timeout=60,
    ).raise_for_status()
    rows, _, _ = project.export("--format", "messages")
    six = next(r for r in rows if r["thread_id"] == "reset-token" and r["index"] == 6)
    assert six["feedback"] == {"score": 1, "comment": "ok now", "at": "2026-11-26"}
    eight = next(r for r in rows if r["thread_id"] == "reset-token" and r["index"] == 8)
    assert eight["feedback"] is None


def test_a_foreign_config_is_one_clear_line_and_nothing_is_written(env, label_studio, tmp_path):
    foreign = create_project(label_studio, "not labelsync's")
    out = tmp_path / "out.jsonl"
    result = run(
        ["export", "--format", "sft", "--out", str(out)],
        {**env, "LABEL_STUDIO_PROJECT_ID": str(foreign.id)},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"labelsync: export: project {foreign.id}: ")
    assert '<Rating name="rating">' in line and "labelsync init-project" in line
    assert not out.exists()
    page = tmp_path / "report.html"
    result = run(
        ["report", "--out", str(page)], {**env, "LABEL_STUDIO_PROJECT_ID": str(foreign.id)}
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"labelsync: report: project {foreign.id}: ")
    assert not page.exists()


def test_out_file_empty_project_and_misused_options(env):
    project = synced(env, corpus=1)
    out = Path(project.env["LABELSYNC_STATE_DIR"]).parent / "sft.jsonl"
    result = run(["export", "--format", "sft", "--out", str(out)], project.env)
    assert result.returncode == 1  # nothing annotated yet: nothing to export
    assert "nothing to export" in result.stderr
    assert out.read_text() == ""
    result = run(["export", "--format", "kto", "--min-rating", "4"], project.env)
    assert result.returncode == 2 and "--min-rating applies to --format sft only" in result.stderr


def test_a_failed_page_is_asked_again_and_a_stop_leaves_no_file(env, tmp_path):
    """A 502 from a proxy in front of Label Studio is retried; SIGTERM while a page is on
    its way ends the export at once, with one line and no half-written --out file."""
    project = rated(synced(env))
    direct, _, _ = project.export("--format", "messages")
    with FaultProxy(project.url) as proxy:
        through = {**project.env, "LABEL_STUDIO_URL": proxy.url}
        proxy.add(Fault("GET", "/api/tasks/", "status", status=502))
        out = tmp_path / "messages.jsonl"
        result = run(["export", "--format", "messages", "--out", str(out)], through)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in out.read_text().splitlines()] == direct
        assert [s for m, p, s in proxy.seen if p.startswith("/api/tasks/")][:2] == [502, 200]

        out.unlink()
        proxy.add(Fault("GET", "/api/tasks/", "forward_then_hang", hang_s=60))
        process = subprocess.Popen(
            [*LABELSYNC, "export", "--format", "messages", "--out", str(out)],
            env=through,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        before = len(proxy.seen)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            p.startswith("/api/users/") for _, p, _ in proxy.seen[before:]
        ):
            time.sleep(0.1)
        time.sleep(1.0)  # the users are known: the first page is on its way, and held
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1] == (
        "labelsync: export: interrupted (a file given with --out is not written)"
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".messages.jsonl*"))
