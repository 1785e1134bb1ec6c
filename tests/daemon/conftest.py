"""Fixtures for the engine's integration tests: a real engine against the real Label Studio."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from labelsync.delivery import Delivery, RetryPolicy
from labelsync.engine import Engine, EngineConfig
from labelsync.labelstudio import LabelStudio
from labelsync.state import State

FAST_RETRIES = RetryPolicy(attempts=6, initial_s=0.05, max_s=0.5)


@dataclass
class Harness:
    engine: Engine
    root: Path
    state_path: Path

    def backfill(self, recheck: bool = False) -> dict[str, int]:
        """What `labelsync backfill` does: the daemon's pipeline run once over the directory."""
        from labelsync.files import scan

        tally = self.engine.prepare()
        retry = self.engine.retry_rejected()
        found = scan(self.root, ("*.json", "*.jsonl"))
        tally.update(self.engine.sync(found, recheck=recheck, final=True, force=retry).tally)
        tally.update(self.engine.sync_tailed().tally)
        return dict(tally)


@pytest.fixture
def conversations(tmp_path: Path) -> Path:
    root = tmp_path / "conversations"
    root.mkdir()
    return root


@pytest.fixture
def make_engine(
    ls_project: Any, conversations: Path, tmp_path: Path
) -> Iterator[Callable[..., Harness]]:
    opened: list[State] = []

    def make(
        url: str | None = None,
        timeout_s: float = 10.0,
        state_name: str = "state.sqlite3",
        **config: Any,
    ) -> Harness:
        state_path = tmp_path / state_name
        state = State.open(state_path)
        opened.append(state)
        ls = LabelStudio(
            url or ls_project.url, ls_project.token, ls_project.id, timeout_s=timeout_s
        )
        stop = threading.Event()
        engine = Engine(
            state,
            ls,
            Delivery(ls, stop, FAST_RETRIES),
            EngineConfig(root=conversations, **config),
            stop,
        )
        return Harness(engine, conversations, state_path)

    yield make
    for state in opened:
        state.close()


def project_tasks(project: Any, project_id: int | None = None) -> list[dict[str, Any]]:
    """Every task's data, read straight from Label Studio's API (not through labelsync)."""
    tasks: list[dict[str, Any]] = []
    page = 1
    while True:
        response = httpx.get(
            f"{project.url}/api/tasks/",
            params={
                "project": project_id or project.id,
                "fields": "task_only",
                "page_size": 1000,
                "page": page,
            },
            headers={"Authorization": f"Token {project.token}"},
            timeout=60,
        )
        if response.status_code == 404:
            return tasks
        response.raise_for_status()
        body = response.json()
        batch = body["tasks"] if isinstance(body, dict) else body
        tasks.extend(batch)
        if not batch or len(tasks) >= body.get("total", 0):
            return tasks
        page += 1


def versions_in(project: Any) -> list[tuple[str, int]]:
    return sorted((t["data"]["thread_id"], t["data"]["version"]) for t in project_tasks(project))


LABELSYNC = [sys.executable, "-m", "labelsync.cli"]


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LABELSYNC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(ls_project, tmp_path: Path) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))
    }
    return {
        **base,
        "LABEL_STUDIO_URL": ls_project.url,
        "LABEL_STUDIO_API_KEY": ls_project.token,
        "LABEL_STUDIO_PROJECT_ID": str(ls_project.id),
        "LABELSYNC_STATE_DIR": str(tmp_path / "state"),
        "LABELSYNC_WATCH_DIR": str(tmp_path / "conversations"),
        "LABELSYNC_RETRY_ATTEMPTS": "2",
        "COLUMNS": "200",
    }
