"""The Label Studio edge: the few calls labelsync makes, with errors sorted by what to do.

- `Unavailable`: try again later (connection refused, timeouts, 408, 429, 5xx);
  `outcome_unknown` says whether an import may have happened anyway.
- `BadTasks`: Label Studio rejected the batch (400); nothing was imported.
- `AccessDenied` / `ProjectNotFound`: a setting is wrong; retrying will not help.

The API key is held by the SDK's client only; no message built here contains it.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.client_wrapper import SyncClientWrapper
from label_studio_sdk.core.request_options import RequestOptions

# Retrying is labelsync's job (delivery.py): an SDK-level retry of an import
# that did reach the server would create the tasks twice.
_NO_SDK_RETRY: RequestOptions = {"max_retries": 0}
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class LabelStudioError(Exception):
    """Base of everything Label Studio answered, or did not."""


class Unavailable(LabelStudioError):
    """kind: unreachable | timeout | server (5xx, 408) | throttled (429)."""

    def __init__(
        self, what: str, *, kind: str, outcome_unknown: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(what)
        self.kind = kind
        self.outcome_unknown = outcome_unknown
        self.retry_after_s = retry_after_s


class BadTasks(LabelStudioError):
    """HTTP 400 on import: Label Studio imports a batch whole or not at all."""


class Fatal(LabelStudioError):
    """A setting is wrong: stop (backfill) or report loudly and retry slowly (daemon)."""


class AccessDenied(Fatal):
    pass


class ProjectNotFound(Fatal):
    pass


@dataclass(frozen=True)
class RemoteVersion:
    thread_id: str
    version: int
    sync_key: str
    task_id: int
    source_file: str


class LabelStudio:
    def __init__(
        self,
        url: str,
        api_key: str,
        project_id: int,
        timeout_s: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.project_id = project_id
        self.timeout_s = timeout_s
        # The SDK's core client: base URL, timeouts and auth for both kinds of key
        # (a legacy token, or a Personal Access Token it exchanges and refreshes).
        # Its full client is not loaded: it imports every endpoint's models (~1 s of
        # start-up) and labelsync makes four kinds of call.
        self._sdk = SyncClientWrapper(
            base_url=self.url,
            api_key=api_key,
            timeout=timeout_s,
            max_retries=0,
            httpx_client=http or httpx.Client(timeout=timeout_s, follow_redirects=True),
        )

    def __repr__(self) -> str:  # never the key
        return f"LabelStudio(url={self.url!r}, project_id={self.project_id})"

    # -- calls ---------------------------------------------------------------------------
    def project_title(self) -> str:
        """Checks the URL, the key and the project in one call."""
        project = self._call(
            "read project", lambda: self._request("GET", f"api/projects/{self.project_id}", {})
        )
        return str(project.get("title") or f"project {self.project_id}")

    def import_tasks(self, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Import in one request; the task ids come back in request order."""
        # The body is encoded here: the SDK's generic encoder walks every value in
        # Python and cost ~0.3 s per 1,000 tasks, a third of a backfill's time.
        body = json.dumps(list(tasks), ensure_ascii=False).encode()
        response = self._call(
            "import tasks",
            lambda: self._request(
                "POST", f"api/projects/{self.project_id}/import", {"return_task_ids": "true"}, body
            ),
            importing=True,
        )
        task_ids = list(response.get("task_ids") or []) if isinstance(response, dict) else []
        if len(task_ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio answered {len(task_ids)} task ids for {len(tasks)} tasks; "
                "is this the Enterprise edition (asynchronous import)?"
            )
        return [int(t) for t in task_ids]

    def find_sync_keys(self, sync_keys: Iterable[str]) -> dict[str, int]:
        """sync_key -> task id, for those of the keys that exist in the project."""
        keys = list(dict.fromkeys(sync_keys))
        found: dict[str, int] = {}
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            items = [
                {
                    "filter": "filter:tasks:data.sync_key",
                    "operator": "equal",
                    "type": "String",
                    "value": key,
                }
                for key in chunk
            ]
            query = {"filters": {"conjunction": "or", "items": items}}
            wanted = set(chunk)
            for task_id, data in self._tasks(query):
                key = data.get("sync_key")
                if key in wanted:
                    found.setdefault(key, task_id)
        return found

    def labelsync_versions(self) -> Iterator[RemoteVersion]:
        """Every task labelsync made in the project: rebuilds a lost state directory."""
        for task_id, data in self._tasks(None):
            try:
                yield RemoteVersion(
                    thread_id=str(data["thread_id"]),
                    version=int(data["version"]),
                    sync_key=str(data["sync_key"]),
                    task_id=task_id,
                    source_file=str(data.get("source_file", "")),
                )
            except (KeyError, TypeError, ValueError):
                continue  # not one of ours

    def create_project(self, title: str, label_config: str, description: str = "") -> int:
        body = json.dumps(
            {"title": title, "label_config": label_config, "description": description}
        ).encode()
        project = self._call(
            "create project", lambda: self._request("POST", "api/projects", {}, body)
        )
        return int(project["id"])

    # -- plumbing ------------------------------------------------------------------------
    def _tasks(self, query: dict[str, Any] | None) -> Iterator[tuple[int, dict[str, Any]]]:
        page = 1
        while True:
            params: dict[str, Any] = {
                "project": self.project_id,
                "fields": "task_only",
                "include": "id,data",
                "page_size": 1000,
                "page": page,
            }
            if query is not None:
                params["query"] = json.dumps(query)
            body = self._call("list tasks", lambda p=params: self._get_json("api/tasks/", p))
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            for task in tasks:
                yield int(task["id"]), task.get("data") or {}
            total = body.get("total") if isinstance(body, dict) else None
            if not tasks or (total is not None and page * 1000 >= total):
                return
            page += 1

    def _request(
        self, method: str, path: str, params: dict[str, Any], body: bytes | None = None
    ) -> Any:
        """A raw call through the SDK's client: its base URL, auth (legacy token or
        Personal Access Token, refreshed) and timeout, without its model layer."""
        response = self._sdk.httpx_client.request(
            path,
            method=method,
            params=params,
            content=body,
            headers={"Content-Type": "application/json"} if body is not None else None,
            request_options=_NO_SDK_RETRY,
        )
        if response.status_code >= 400:
            raise ApiError(
                status_code=response.status_code,
                headers=dict(response.headers),
                body=_body(response),
            )
        return response.json()

    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        # The SDK's pager parses every task into a pydantic model; the raw call is
        # ~3x faster on big projects and only ids and data are needed.
        try:
            return self._request("GET", path, params)
        except ApiError as exc:
            if exc.status_code == 404 and params.get("page", 1) > 1:
                return {"tasks": []}  # past the last page
            raise

    def _call(self, what: str, fn: Any, importing: bool = False) -> Any:
        try:
            return fn()
        except ApiError as exc:
            raise self._classify(what, exc) from None
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise Unavailable(
                f"{what}: cannot connect to {self.url}", kind="unreachable", outcome_unknown=False
            ) from None
        except httpx.TimeoutException:
            raise Unavailable(
                f"{what}: no answer within {self.timeout_s:g} s (LABELSYNC_TIMEOUT_SECONDS)",
                kind="timeout",
                outcome_unknown=importing,
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{what}: connection lost ({type(exc).__name__})",
                kind="unreachable",
                outcome_unknown=importing,
            ) from None

    def _classify(self, what: str, exc: ApiError) -> LabelStudioError:
        status = exc.status_code or 0
        detail = _detail(exc.body)
        if status in (401, 403):
            return AccessDenied(
                f"Label Studio refused the API key (HTTP {status}{detail}): "
                "check LABEL_STUDIO_API_KEY (a legacy token or a Personal Access Token)"
            )
        if status == 404:
            return ProjectNotFound(
                f"{what}: project {self.project_id} not found at {self.url} (HTTP 404): "
                "check LABEL_STUDIO_PROJECT_ID and LABEL_STUDIO_URL"
            )
        if status == 400:
            return BadTasks(f"Label Studio rejected the data (HTTP 400{detail})")
        if status in _RETRYABLE_STATUS or status >= 500:
            return Unavailable(
                f"{what}: HTTP {status}{detail}",
                kind="throttled" if status == 429 else "server",
                outcome_unknown=status >= 500 or status == 408,
                retry_after_s=_retry_after(exc.headers or {}),
            )
        return LabelStudioError(f"{what}: HTTP {status}{detail}")


def _retry_after(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _detail(body: Any) -> str:
    """A short reason from Label Studio's answer, on one line."""
    text: Any = body
    if isinstance(body, dict):
        # "Validation error" alone says nothing: the per-field reasons do.
        text = body.get("validation_errors") or body.get("detail") or body.get("message") or body
    if isinstance(text, dict):
        text = "; ".join(f"{field}: {_flat(reasons)}" for field, reasons in text.items())
    line = " ".join(str(text).split()) if text else ""
    if line.lstrip().startswith("<"):  # an HTML error page
        return ""
    return f": {line[:300]}" if line else ""


def _flat(reasons: Any) -> str:
    if isinstance(reasons, list):
        return ", ".join(_flat(r) for r in reasons if r not in ({}, "", None))
    return str(reasons)
