"""Shared fixtures: one real Label Studio per test session, a fresh project per test;
one real PostgreSQL per session, a fresh database per test.

The machinery lives in ``tests/support/labelstudio.py`` and ``tests/support/postgres.py``;
this file only wires it into pytest. Starting Label Studio costs ~45-70 s (first
start, migrations), so it happens once, lazily, only when a test asks for it;
PostgreSQL starts in about a second, also only when asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.labelstudio import (
    LabelStudioServer,
    LSProject,
    create_personal_access_token,
    create_project,
)
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A running Label Studio (legacy token enabled) on 127.0.0.1, for the whole session.

    Tests may ``stop()`` and ``start()`` it (or use ``with label_studio.stopped():``)
    to simulate an outage; they must leave it running.
    """
    kept = os.environ.get("LABELSYNC_TEST_LS_DATA")
    if kept:
        # A data dir kept between runs (development): a restart takes ~8 s instead of a
        # first start's ~60 s of migrations. Credentials must then be the same every time.
        server = LabelStudioServer(
            Path(kept), password="labelsync-tests-password", legacy_token="e" * 40
        )
        with server:
            yield server
        return
    data_dir: Path = tmp_path_factory.mktemp("label-studio")
    with LabelStudioServer(data_dir) as server:
        yield server


@pytest.fixture
def ls_project(label_studio: LabelStudioServer, request: pytest.FixtureRequest) -> LSProject:
    """A new, empty project with the minimal dialogue config, named after the test."""
    label_studio.start()  # no-op unless an earlier test left it stopped
    title = re.sub(r"[^\w.-]+", "-", request.node.name)[:50]
    return create_project(label_studio, title)


@pytest.fixture(scope="session")
def ls_personal_access_token(label_studio: LabelStudioServer) -> str:
    """The admin's Personal Access Token, made once: Label Studio allows one live PAT
    per user, so tests share this one instead of each creating their own."""
    return create_personal_access_token(label_studio, replace=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL on 127.0.0.1 (password login, role `labelsync`), for the
    whole session. Tests may ``stop()`` and ``start()`` it; they must leave it running."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    """A new, empty database owned by the `labelsync` role; its name."""
    postgres.start()  # no-op unless an earlier test left it stopped
    name = postgres.create_database()
    yield name
    postgres.start()
    postgres.drop_database(name)


@pytest.fixture
def pg_url(postgres: PostgresServer, pg_database: str) -> str:
    """LABELSYNC_STATE_URL for that database, password included."""
    return postgres.url(pg_database, password=True)
