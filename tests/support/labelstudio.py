"""A real Label Studio for tests and the demo.

labelsync's promises (exactly once, catches up after an outage, works with
either kind of token) can only be checked against the real server, so the
test suite starts one instead of mocking its API. Label Studio pins its own
SDK and Django versions, so it lives in a separate, cached virtualenv and is
only ever run as a subprocess: its pins never meet the project's.

Facts this module relies on (measured with label-studio 1.23.2):

- ``label-studio --version`` prints the version and then *starts a server* on
  0.0.0.0 with the default data dir; any ``label-studio`` command also creates
  that data dir. The install check therefore reads package metadata and runs
  ``--help`` against a throwaway data dir.
- ``--internal-host`` is the bind address; ``--host`` is only the public URL.
- Whether legacy tokens are accepted is stored in the organization when it is
  created (first start on a data dir), from
  ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``; later starts do not change it.
- A Personal Access Token is a JWT refresh token made by ``POST /api/token/``;
  an organization's PATs are on by default (``/api/jwt/settings``). A user can
  hold only one live PAT (a second ``POST`` answers 409), and the server keeps
  only a truncated copy, so a lost PAT cannot be read back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from label_studio_sdk.client import LabelStudio

from tests.support.managed import Managed

LS_VERSION = "1.23.2"
"""The Label Studio version labelsync is tested against (pins label-studio-sdk 2.1.2)."""

_MARKER = ".labelsync-installed"
"""Written last by :func:`ensure_installed`: its absence means the install is unfinished."""

# Only these variables pass from the caller's environment to Label Studio.
# Anything else could change its behaviour behind the test's back:
# LABEL_STUDIO_* (API key, URL, DB), DJANGO_DB / POSTGRE_* (another database),
# DEBUG, proxies, ...
_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")


def _log(message: str) -> None:
    """Progress goes to stderr: installs and first starts take minutes."""
    print(f"[labelsync.tests] {message}", file=sys.stderr, flush=True)


def default_venv() -> Path:
    """Where the Label Studio virtualenv is cached between runs.

    ``$LABELSYNC_LS_VENV`` wins; otherwise
    ``${XDG_CACHE_HOME:-~/.cache}/labelsync/label-studio-<version>``.
    """
    explicit = os.environ.get("LABELSYNC_LS_VENV")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "labelsync" / f"label-studio-{LS_VERSION}"


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _venv_works(venv: Path) -> bool:
    """True when ``venv`` holds a runnable ``label-studio`` of :data:`LS_VERSION`.

    Deliberately avoids ``label-studio --version``, which starts a server.
    """
    python, exe = _bin(venv, "python"), _bin(venv, "label-studio")
    if not (python.exists() and exe.exists()):
        return False
    try:
        version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if version.returncode != 0 or version.stdout.strip() != LS_VERSION:
            return False
        with tempfile.TemporaryDirectory(prefix="ls-check-") as scratch:
            env = _clean_env() | {"LABEL_STUDIO_BASE_DATA_DIR": scratch, "HOME": scratch}
            helped = subprocess.run(
                [str(exe), "--help"], capture_output=True, env=env, timeout=120, check=False
            )
        return helped.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_installed(venv: Path | None = None) -> Path:
    """Install Label Studio into its cached virtualenv unless it is already there.

    Returns the path of the ``label-studio`` executable.

    A venv cannot be built elsewhere and renamed (its scripts hard-code their
    path), so completeness is recorded by a marker file written last: a venv
    without it (an interrupted install) is deleted and built again. A venv
    that works but has no marker (made by hand or by an older helper) is
    checked once and adopted. A file lock keeps parallel test processes from
    installing at the same time.
    """
    venv = venv or default_venv()
    exe = _bin(venv, "label-studio")
    marker = venv / _MARKER
    if marker.exists() and exe.exists():
        return exe

    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing: wait for it
        if marker.exists() and exe.exists():
            return exe
        if _venv_works(venv):
            _log(f"adopting existing Label Studio {LS_VERSION} at {venv}")
            marker.write_text(LS_VERSION + "\n")
            return exe
        if venv.exists():
            _log(f"removing unfinished Label Studio install at {venv}")
            shutil.rmtree(venv)
        _log(f"installing label-studio=={LS_VERSION} into {venv} (about 2 minutes, ~140 MB)")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(_bin(venv, "python")),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"label-studio=={LS_VERSION}",
            ],
            check=True,
        )
        if not _venv_works(venv):
            raise RuntimeError(f"label-studio was installed into {venv} but does not run")
        marker.write_text(LS_VERSION + "\n")
        _log(f"label-studio {LS_VERSION} installed in {time.monotonic() - started:.0f} s")
        return exe


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LabelStudioServer(Managed):
    """One Label Studio process on 127.0.0.1, with its own data dir and admin user.

    ``stop()`` and ``start()`` may be called repeatedly: the data dir (SQLite
    database, user, tokens, projects) survives, which is how tests simulate an
    outage. With no ``data_dir`` a temporary one is made and removed by
    :meth:`close` (also on ``__exit__``); a given ``data_dir`` is kept, which is
    what ``make demo`` wants. The port is chosen once, so :attr:`url` stays
    valid across restarts.

    The credentials only take effect on the first start on a data dir (that is
    when Label Studio creates the user and organization); pass the same ones
    when reusing a persistent data dir.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        username: str = "labelsync@example.com",
        password: str | None = None,
        legacy_token: str | None = None,
        enable_legacy_api_token: bool = True,
        executable: Path | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="labelsync-ls-")).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        # DRF tokens are 40 hex chars; Label Studio ignores tokens of 5 chars or fewer.
        self.legacy_token = legacy_token or secrets.token_hex(20)
        self.enable_legacy_api_token = enable_legacy_api_token
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.log_path = self.data_dir / "label-studio.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LabelStudioServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _env(self) -> dict[str, str]:
        return _clean_env() | {
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.legacy_token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": str(self.enable_legacy_api_token).lower(),
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LATEST_VERSION_CHECK": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> LabelStudioServer:
        """Start the server and return once ``GET /health`` answers 200.

        Raises ``RuntimeError`` with the log's tail if the process exits or the
        server is not healthy within ``startup_timeout`` (first start on a new
        data dir runs migrations: ~45-70 s; a restart takes ~8 s).
        """
        if self.running:
            return self
        exe = self.executable or ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(exe),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                env=self._env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our own process group: stop() reaches any children
            )
        _log(f"starting Label Studio at {self.url} (log: {self.log_path})")
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise RuntimeError(
                    f"Label Studio exited with code {code} while starting; "
                    f"log tail ({self.log_path}):\n{_tail(self.log_path)}"
                )
            if self._healthy():
                _log(f"Label Studio healthy after {time.monotonic() - started:.1f} s")
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Label Studio not healthy at {self.url}/health after "
                    f"{self.startup_timeout:.0f} s; log tail ({self.log_path}):\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds.

        The data dir is kept, so :meth:`start` brings the same server back.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Stop, and delete the data dir if this object made it."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[httpx.Client]:
        """An ``httpx.Client`` logged in through the web form, for endpoints that
        need a browser session (or when legacy tokens are disabled).

        The client sends the CSRF header Django wants on unsafe methods.
        """
        with httpx.Client(base_url=self.url, timeout=30.0, follow_redirects=True) as client:
            client.get("/user/login/")
            csrf = client.cookies.get("csrftoken") or ""
            response = client.post(
                "/user/login/",
                data={
                    "email": self.username,
                    "password": self.password,
                    "csrfmiddlewaretoken": csrf,
                },
                headers={"Referer": f"{self.url}/user/login/"},
            )
            if "sessionid" not in client.cookies:
                raise RuntimeError(f"login as {self.username} failed: HTTP {response.status_code}")
            client.headers["X-CSRFToken"] = client.cookies.get("csrftoken") or csrf
            client.headers["Referer"] = self.url
            yield client


def create_personal_access_token(server: LabelStudioServer, *, replace: bool = False) -> str:
    """Create the admin user's Personal Access Token (a JWT refresh token) and return it.

    Uses the legacy token when the organization accepts it, else a session
    login. PATs are enabled for an organization by default; this turns them on
    in ``/api/jwt/settings`` in case they were switched off. Label Studio allows
    one live PAT per user and cannot show it again: a second call raises
    ``RuntimeError`` (HTTP 409) unless ``replace=True``, which first revokes
    (blacklists) the user's live PATs, as the "Revoke" button does.
    """
    legacy = httpx.Client(
        base_url=server.url,
        timeout=30.0,
        headers={"Authorization": f"Token {server.legacy_token}"},
    )
    with legacy:
        if legacy.get("/api/jwt/settings").status_code == 200:
            return _make_pat(legacy, replace)
    with server.session() as session:
        return _make_pat(session, replace)


def _make_pat(client: httpx.Client, replace: bool) -> str:
    settings = client.get("/api/jwt/settings")
    settings.raise_for_status()
    if not settings.json().get("api_tokens_enabled"):
        client.post(
            "/api/jwt/settings", json=settings.json() | {"api_tokens_enabled": True}
        ).raise_for_status()
    if replace:
        listed = client.get("/api/token/")
        listed.raise_for_status()
        for item in listed.json():  # truncated tokens (no signature) are enough to revoke
            client.post("/api/token/blacklist/", json={"refresh": item["token"]})
    response = client.post("/api/token/")
    if response.status_code == 409:
        raise RuntimeError(
            "this user already has a Personal Access Token; Label Studio keeps only one "
            "and cannot show it again (revoke it in Account & Settings first)"
        )
    response.raise_for_status()
    return str(response.json()["token"])


def set_legacy_tokens_enabled(server: LabelStudioServer, enabled: bool) -> None:
    """Switch the organization's legacy-token setting (through a session login,
    since turning legacy tokens off must not depend on one)."""
    with server.session() as session:
        response = session.post("/api/jwt/settings", json={"legacy_api_tokens_enabled": enabled})
        response.raise_for_status()


MINIMAL_CHAT_CONFIG = (
    '<View><Paragraphs name="chat" value="$chat" layout="dialogue" nameKey="role" '
    'textKey="content"/><Choices name="rating" toName="chat"><Choice value="good"/>'
    '<Choice value="bad"/></Choices></View>'
)
"""The smallest Community config that shows a conversation: tasks carry ``data.chat``,
a non-empty list of ``{"role": str, "content": str}``."""


@dataclass
class LSProject:
    """A project on a running server, with what a test needs to point labelsync at it."""

    id: int
    url: str
    token: str
    client: LabelStudio


def sdk_client(server: LabelStudioServer, token: str | None = None) -> LabelStudio:
    """An SDK client with URL and key given explicitly: the SDK would otherwise
    take ``LABEL_STUDIO_API_KEY`` from the environment and default to port 8000."""
    return LabelStudio(base_url=server.url, api_key=token or server.legacy_token)


def create_project(
    server: LabelStudioServer, title: str, label_config: str = MINIMAL_CHAT_CONFIG
) -> LSProject:
    """Create a fresh project (tests never share one, since Label Studio never dedups)."""
    client = sdk_client(server)
    project = client.projects.create(title=title, label_config=label_config)
    assert project.id is not None
    return LSProject(id=project.id, url=server.url, token=server.legacy_token, client=client)


if __name__ == "__main__":
    # `python -m tests.support.labelstudio install`: what `make test` runs first,
    # so the ~2-minute install shows as its own step, not inside the first test.
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m tests.support.labelstudio install")
    print(ensure_installed())
