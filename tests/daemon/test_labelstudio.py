"""The Label Studio edge: deadlines, stops, answers that are not Label Studio's, secrets.

A fake server (tests/support/fakeserver.py) stands in where a real Label
Studio cannot misbehave on demand (a trickled answer, a login page, a JSON
list, a redirect, an echoed Authorization header); the fault proxy in front of
the real one where the misbehaviour sits between them. Each test asserts what a
user sees: the run ends (no hang), one line naming the setting to fix, no key.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from labelsync.labelstudio import (
    AccessDenied,
    BadTasks,
    LabelStudio,
    LabelStudioError,
    ProjectNotFound,
    Stopped,
    Unavailable,
    WrongServer,
)
from tests.daemon.conftest import LABELSYNC, project_tasks, run
from tests.support.corpus import write_atomic, write_corpus
from tests.support.fakeserver import (
    Answer,
    FakeServer,
    Request,
    echo_authorization,
    html_error,
    json_answer,
    login_page,
    redirect_to_login,
)
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.labelstudio import free_port

KEY = "0123456789abcdef0123456789abcdef01234567"  # the shape of a legacy token
HANG_S = 60  # a hang detector: far more than any deadline below, far less than a trickle


def edge(url: str, key: str = KEY, **options: object) -> LabelStudio:
    options.setdefault("timeout_s", 5.0)
    return LabelStudio(url, key, 1, **options)  # type: ignore[arg-type]


def trickled(request: Request) -> Answer:
    """The whole answer, status line included, at one byte a second (~1.5 h)."""
    return Answer(200, json.dumps({"id": 1, "title": "t", "pad": " " * 5000}).encode(), trickle_s=1)


def tasks(n: int) -> list[dict[str, object]]:
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    return [
        {"data": {"sync_key": f"k{i}", "thread_id": f"t{i}", "version": 1, "chat": chat}}
        for i in range(n)
    ]


# -- deadlines and stops --------------------------------------------------------------------
@pytest.mark.timeout(HANG_S)
def test_an_answer_trickled_a_byte_a_second_ends_at_the_deadline():
    with FakeServer(trickled) as fake:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            edge(fake.url, timeout_s=2.0).project_title()
        print(f"\ntrickled answer abandoned after {time.monotonic() - started:.2f} s")
    assert caught.value.kind == "timeout"
    assert "within 2 s (LABELSYNC_TIMEOUT_SECONDS)" in str(caught.value)
    assert fake.url in str(caught.value)


@pytest.mark.timeout(HANG_S)
def test_an_import_has_its_own_longer_deadline_and_an_abandoned_one_may_still_run():
    with FakeServer(trickled) as fake:
        ls = edge(fake.url, timeout_s=1.0, import_timeout_s=3.0)
        assert ls.import_timeout_s == 3.0
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            ls.import_tasks(tasks(3))
        waited = time.monotonic() - started
    print(f"\nimport abandoned after {waited:.2f} s")
    assert "within 3 s (LABELSYNC_IMPORT_TIMEOUT_SECONDS)" in str(caught.value)
    # Every byte of the body left: Label Studio may have imported it, may still be.
    assert caught.value.outcome_unknown and caught.value.in_flight


@pytest.mark.timeout(HANG_S)
@pytest.mark.parametrize("call", ["read", "import"])
def test_a_stop_abandons_a_request_in_flight(call: str):
    stop = threading.Event()
    with FakeServer(trickled) as fake:
        ls = edge(fake.url, timeout_s=3600.0, import_timeout_s=3600.0, stop=stop)
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Stopped):
            ls.project_title() if call == "read" else ls.import_tasks(tasks(2))
        print(f"\n{call}: abandoned {time.monotonic() - started - 0.5:.2f} s after the stop")


def test_a_stop_set_before_the_call_sends_nothing():
    stop = threading.Event()
    stop.set()
    with FakeServer(trickled) as fake, pytest.raises(Stopped):
        edge(fake.url, stop=stop).import_tasks(tasks(1))
    assert fake.requests == []


def test_an_import_that_could_not_connect_is_a_known_outcome():
    with pytest.raises(Unavailable) as caught:
        edge(f"http://127.0.0.1:{free_port()}").import_tasks(tasks(1))
    assert caught.value.kind == "unreachable" and not caught.value.outcome_unknown


def test_the_heartbeat_is_called_while_a_long_answer_is_awaited():
    beats: list[float] = []
    with FakeServer(trickled) as fake, pytest.raises(Unavailable):
        edge(fake.url, timeout_s=3.5, heartbeat=lambda: beats.append(1)).project_title()
    assert len(beats) >= 2  # the daemon's watchdog is pinged from the waiting loop


# -- answers that are not Label Studio's ----------------------------------------------------
def answering(answer: Answer) -> Callable[[Request], Answer]:
    return lambda request: answer


WRONG_SERVERS = {
    "login page": (login_page(), "HTML page"),
    "JSON list": (json_answer([{"id": 1}]), "JSON list"),
    "redirect to login": (redirect_to_login(), "redirected to http://127.0.0.1:"),
    "HTTP 405": (json_answer({"detail": 'Method "GET" not allowed.'}, 405), "HTTP 405"),
}


@pytest.mark.parametrize("case", sorted(WRONG_SERVERS))
def test_what_is_not_label_studio_is_one_clear_line_naming_the_url(case: str):
    answer, expected = WRONG_SERVERS[case]
    with FakeServer(answering(answer)) as fake, pytest.raises(WrongServer) as caught:
        edge(fake.url).project_title()
    message = str(caught.value)
    assert expected in message and "LABEL_STUDIO_URL" in message and fake.url in message
    assert "\n" not in message and "next=" not in message  # the redirect's query is not shown


def test_an_html_5xx_is_retryable_and_says_what_answered():
    with FakeServer(answering(html_error(502))) as fake, pytest.raises(Unavailable) as caught:
        edge(fake.url).import_tasks(tasks(2))
    message = str(caught.value)
    assert caught.value.kind == "server" and caught.value.outcome_unknown
    assert "HTTP 502 from " + fake.url in message and "HTML error page" in message
    assert "<html" not in message


def test_a_retry_after_that_is_neither_seconds_nor_a_date_is_ignored():
    answer = Answer(503, b"{}", {"Content-Type": "application/json", "Retry-After": "soon"})
    with FakeServer(answering(answer)) as fake, pytest.raises(Unavailable) as caught:
        edge(fake.url).project_title()
    assert caught.value.retry_after_s is None


def test_an_import_answered_without_task_ids_names_the_likely_cause():
    answer = json_answer({"task_count": 2, "import": 7}, 201)
    with FakeServer(answering(answer)) as fake, pytest.raises(WrongServer, match="Enterprise"):
        edge(fake.url).import_tasks(tasks(2))


def test_a_task_list_of_another_shape_is_refused_not_a_crash():
    answer = json_answer({"tasks": "nope"})
    with FakeServer(answering(answer)) as fake, pytest.raises(WrongServer, match="_URL"):
        edge(fake.url).find_sync_keys(["a"])


@pytest.mark.parametrize(
    "case", ["login page", "JSON list", "redirect to login", "HTML 502"], ids=str
)
def test_backfill_against_a_wrong_server_exits_2_with_one_line(tmp_path: Path, case: str):
    answer = html_error(502) if case == "HTML 502" else WRONG_SERVERS[case][0]
    write_corpus(tmp_path / "conversations", 2)
    with FakeServer(answering(answer)) as fake:
        result = run(["backfill"], fake_env(tmp_path, fake.url), timeout=HANG_S)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("labelsync: Label Studio: ") and fake.url in last
    if case != "HTML 502":  # a 5xx is worth retrying; it says what answered instead
        assert "LABEL_STUDIO_URL" in last


@pytest.mark.timeout(3 * HANG_S)
def test_the_daemon_keeps_running_and_retries_when_the_url_reaches_a_login_page(tmp_path: Path):
    with FakeServer(answering(login_page())) as fake:
        process = subprocess.Popen(
            [*LABELSYNC, "run"],
            env=fake_env(tmp_path, fake.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # A wrong setting is retried every minute: wait for the second try.
            deadline = time.monotonic() + 2 * HANG_S
            while len(fake.requests) < 2 and time.monotonic() < deadline:
                assert process.poll() is None, "the daemon died"
                time.sleep(0.2)
            assert len(fake.requests) >= 2, "the daemon did not try again"
            assert process.poll() is None
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "HTML page" in stderr and "LABEL_STUDIO_URL" in stderr


def fake_env(tmp_path: Path, url: str, key: str = KEY) -> dict[str, str]:
    import os

    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LABELSYNC_"))
    }
    (tmp_path / "conversations").mkdir(exist_ok=True)
    return {
        **base,
        "LABEL_STUDIO_URL": url,
        "LABEL_STUDIO_API_KEY": key,
        "LABEL_STUDIO_PROJECT_ID": "1",
        "LABELSYNC_STATE_DIR": str(tmp_path / "state"),
        "LABELSYNC_WATCH_DIR": str(tmp_path / "conversations"),
        "LABELSYNC_RETRY_ATTEMPTS": "2",
        "LABELSYNC_TIMEOUT_SECONDS": "10",
        "COLUMNS": "200",
    }


# -- secrets --------------------------------------------------------------------------------
def personal_access_token() -> str:
    """The shape of a Label Studio PAT: a JWT refresh token (signature unchecked by clients)."""
    claims = {"token_type": "refresh", "exp": int(time.time()) + 3600, "jti": "0a1b2c3d4e5f"}
    return jwt.encode(claims, "not-the-server-secret-0123456789abcdef", algorithm="HS256")


ACCESS_TOKEN = jwt.encode(
    {"token_type": "access", "exp": int(time.time()) + 300, "user_id": 1},
    "not-the-server-secret-0123456789abcdef",
    algorithm="HS256",
)


def echoing(status: int) -> Callable[[Request], Answer]:
    """Answers the PAT exchange, then echoes the Authorization header in every error."""
    echo = echo_authorization(status)

    def answer(request: Request) -> Answer:
        if request.path.startswith("/api/token/refresh"):
            return json_answer({"access": ACCESS_TOKEN})
        return echo(request)

    return answer


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 500, 503])
@pytest.mark.parametrize("kind", ["legacy token", "personal access token"])
def test_a_key_echoed_in_an_error_body_never_reaches_the_message(status: int, kind: str):
    key = KEY if kind == "legacy token" else personal_access_token()
    with FakeServer(echoing(status)) as fake:
        with pytest.raises(LabelStudioError) as caught:
            edge(fake.url, key).import_tasks(tasks(1))
        sent = {r.headers.get("Authorization", "") for r in fake.requests} - {""}
    message = str(caught.value)
    assert sent, "nothing was sent with a key"
    for secret in {key, ACCESS_TOKEN} | {s.split(" ", 1)[1] for s in sent}:
        assert secret not in message
        assert secret not in repr(caught.value)
    assert "<redacted>" in message or status in (404,)  # 404 names the setting, not the body
    assert isinstance(caught.value, _expected_class(status))


def _expected_class(status: int) -> type[LabelStudioError]:
    return {
        400: BadTasks,
        401: AccessDenied,
        403: AccessDenied,
        404: ProjectNotFound,
        405: WrongServer,
    }.get(status, Unavailable)


def test_a_cut_short_detail_cannot_leave_half_a_key():
    """Details are cut at 300 characters: scrubbing happens before, so no prefix survives."""
    body = {"detail": "x" * 280 + f" Token {KEY}"}
    with FakeServer(answering(json_answer(body, 400))) as fake, pytest.raises(BadTasks) as caught:
        edge(fake.url).import_tasks(tasks(1))
    assert KEY[:12] not in str(caught.value)


def test_a_url_with_a_user_and_password_is_refused_without_showing_them(tmp_path: Path):
    with pytest.raises(ValueError, match="user name or password") as caught:
        LabelStudio("http://admin:hunter2secret@127.0.0.1:8080", KEY, 1)
    assert "hunter2secret" not in str(caught.value)
    result = run(
        ["backfill"], fake_env(tmp_path, "http://admin:hunter2secret@127.0.0.1:8080"), timeout=60
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "LABEL_STUDIO_URL" in result.stderr and "user name or password" in result.stderr
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "admin" not in result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["legacy token", "personal access token"])
def test_an_echoed_key_stays_out_of_stderr_the_log_the_state_and_status(
    env, ls_project, tmp_path, ls_personal_access_token, kind
):
    """A real backfill (and daemon) through a proxy that quotes the Authorization
    header in its 400 and 503 bodies: the reasons are kept, the key is not."""
    key = env["LABEL_STUDIO_API_KEY"] if kind == "legacy token" else ls_personal_access_token
    root = Path(env["LABELSYNC_WATCH_DIR"])
    write_corpus(root, 6)
    write_atomic(
        root / "conversation_poison.json",
        {"thread_id": "poison", "messages": [{"role": "user", "content": "q"}] * 4},
    )
    with FaultProxy(ls_project.url) as proxy:
        proxy.echo_authorization = True
        proxy.reject_thread_ids.add("poison")
        proxy.add(Fault("POST", f"/api/projects/{ls_project.id}/import", "status", status=503))
        settings = {
            **env,
            "LABEL_STUDIO_URL": proxy.url,
            "LABEL_STUDIO_API_KEY": key,
            "LABELSYNC_RETRY_ATTEMPTS": "4",
            "LABELSYNC_MIN_TURNS": "1",
        }
        backfill = run(["backfill", "-v"], settings)
        # Again with JSON log lines, from a new state (the project's tasks are found).
        proxy.add(Fault("POST", f"/api/projects/{ls_project.id}/import", "status", status=503))
        json_settings = {
            **settings,
            "LABELSYNC_LOG_FORMAT": "json",
            "LABELSYNC_STATE_DIR": str(tmp_path / "json-state"),
        }
        json_log = run(["backfill", "-v"], json_settings)
        # The daemon: a refused listing at start is its last error, shown by `status`.
        for _ in range(3):
            proxy.add(Fault("GET", "/api/tasks", "status", status=503))
        daemon = subprocess.Popen(
            [*LABELSYNC, "run"],
            env={**settings, "LABELSYNC_STATE_DIR": str(tmp_path / "daemon-state")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline and _last_error(tmp_path / "daemon-state", env) is None:
            time.sleep(0.3)
        daemon.terminate()
        _, daemon_log = daemon.communicate(timeout=HANG_S)
        sent = {value.split(" ", 1)[1] for value in proxy.authorizations}
    assert backfill.returncode == 1, backfill.stderr  # the poison file is quarantined
    shown = " ".join(backfill.stderr.split())  # rich wraps long lines
    scheme = "Token" if kind == "legacy token" else "Bearer"
    assert f"injected: bad task (request had Authorization: {scheme} <redacted>)" in shown
    assert "injected fault" in shown  # the 503's body, retried
    assert json_log.returncode == 1, json_log.stderr
    json_lines = [json.loads(line) for line in json_log.stderr.splitlines() if line.startswith("{")]
    assert any("request had Authorization: " in entry["msg"] for entry in json_lines)
    status = run(["status"], env)
    status_json = run(["status", "--json"], env)
    daemon_status = run(["status"], {**env, "LABELSYNC_STATE_DIR": str(tmp_path / "daemon-state")})
    assert "HTTP 400" in status.stdout and "<redacted>" in status.stdout
    assert "last error:" in daemon_status.stdout and "<redacted>" in daemon_status.stdout
    places = {
        "backfill stderr": backfill.stdout + backfill.stderr,
        "json log": json_log.stdout + json_log.stderr,
        "daemon log": daemon_log,
        "status": status.stdout + status_json.stdout + daemon_status.stdout,
    }
    states = ("json-state", "daemon-state")
    for directory in (Path(env["LABELSYNC_STATE_DIR"]), *(tmp_path / s for s in states)):
        for path in directory.iterdir():
            places[str(path)] = path.read_bytes().decode(errors="replace")
    secrets = sent | {key}
    assert len(sent) >= 1
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a key in {where}"
    assert len(project_tasks(ls_project)) == 6


def _last_error(state_dir: Path, env: dict[str, str]) -> str | None:
    status = run(["status", "--json"], {**env, "LABELSYNC_STATE_DIR": str(state_dir)})
    if status.returncode != 0:
        return None
    return (json.loads(status.stdout).get("daemon") or {}).get("last_error")


def test_an_expired_personal_access_token_is_one_line_not_a_traceback(tmp_path: Path):
    expired = jwt.encode(
        {"token_type": "refresh", "exp": int(time.time()) - 60}, "s" * 32, algorithm="HS256"
    )
    with pytest.raises(AccessDenied, match="LABEL_STUDIO_API_KEY") as caught:
        edge("http://127.0.0.1:9", expired)
    assert expired not in str(caught.value)


def test_the_real_label_studio_still_answers_every_call(ls_project):
    ls = LabelStudio(ls_project.url, ls_project.token, ls_project.id, timeout_s=30)
    assert ls.project_title()
    ids = ls.import_tasks(tasks(3))
    assert len(ids) == 3
    assert ls.find_sync_keys(["k0", "k2", "absent"]) == {"k0": ids[0], "k2": ids[2]}
    assert sorted(v.task_id for v in ls.labelsync_versions()) == ids
    assert len(project_tasks(ls_project)) == 3


def test_sockets_of_an_abandoned_exchange_are_closed():
    """The worker of an abandoned request ends too: nothing keeps trickling in the background."""
    with FakeServer(trickled) as fake:
        ls = edge(fake.url, timeout_s=1.0)
        for _ in range(3):
            with pytest.raises(Unavailable):
                ls.project_title()
        time.sleep(0.5)
        alive = [t for t in threading.enumerate() if t.name == "labelsync-http"]
    assert alive == []
