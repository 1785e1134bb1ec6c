"""The test harness's Label Studio is real and reachable with both kinds of token.

If these fail, every other Label Studio test would fail for a reason that has
nothing to do with labelsync; they say so first and plainly.
"""

from __future__ import annotations

from typing import Any

import httpx
from label_studio_sdk import ImportApiRequest
from label_studio_sdk.client import LabelStudio

from tests.support.labelstudio import LabelStudioServer, LSProject

CHAT = [
    {"role": "user", "content": "Is the sky blue?"},
    {"role": "assistant", "content": "Yes, on a clear day."},
]


def test_server_is_healthy_and_imports_a_task(
    label_studio: LabelStudioServer, ls_project: LSProject
) -> None:
    assert httpx.get(f"{label_studio.url}/health", timeout=10).status_code == 200

    imported = ls_project.client.projects.import_tasks(
        id=ls_project.id,
        request=[ImportApiRequest(data={"chat": CHAT, "sync_key": "conv-1@v1"})],
        return_task_ids=True,
        request_options={"max_retries": 0},
    )

    # Community imports synchronously; task_ids is an undeclared (extra) field of the response.
    assert imported.task_count == 1
    task_ids = (imported.model_extra or {})["task_ids"]
    assert len(task_ids) == 1
    # (the SDK's pager item types defeat mypy's inference, hence list[Any])
    listed: list[Any] = list(
        ls_project.client.tasks.list(
            project=ls_project.id, fields="task_only", include="id,data", page_size=100
        )
    )
    assert [(task.id, task.data) for task in listed] == [
        (task_ids[0], {"chat": CHAT, "sync_key": "conv-1@v1"})
    ]


def test_personal_access_token_works_with_the_sdk(
    label_studio: LabelStudioServer, ls_project: LSProject, ls_personal_access_token: str
) -> None:
    # A PAT is a JWT refresh token; the SDK exchanges it for access tokens itself.
    assert ls_personal_access_token.count(".") == 2
    client = LabelStudio(base_url=label_studio.url, api_key=ls_personal_access_token)

    projects: list[Any] = list(client.projects.list())
    project_ids = {project.id for project in projects}

    assert ls_project.id in project_ids
