"""The Prometheus endpoint, served for real on a loopback port and read over HTTP."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from labelsync.metrics import Metrics, MetricsError, MetricsServer, parse_addr
from tests.daemon.conftest import LABELSYNC, run
from tests.support.labelstudio import free_port


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = metrics.serve("127.0.0.1:0")  # port 0: the OS picks a free one
    try:
        yield metrics, server
    finally:
        server.close()


def scrape(server: MetricsServer) -> dict[str, float]:
    with urllib.request.urlopen(server.url, timeout=30) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_counts_are_visible_at_metrics(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    metrics.files_seen.inc(3)
    metrics.tasks_created.inc(2)
    metrics.versions.inc()
    metrics.duplicates_skipped.inc()
    metrics.quarantined.inc()
    metrics.backlog.set(7)
    metrics.import_latency.observe(4.2)
    metrics.label_studio_error("auth")
    metrics.label_studio_error("a brand new kind")

    samples = scrape(server)

    assert server.host == "127.0.0.1"
    assert samples["labelsync_files_seen_total"] == 3
    assert samples["labelsync_tasks_created_total"] == 2
    assert samples["labelsync_versions_total"] == 1
    assert samples["labelsync_duplicates_skipped_total"] == 1
    assert samples["labelsync_quarantined_total"] == 1
    assert samples["labelsync_backlog_files"] == 7
    assert samples["labelsync_import_latency_seconds_count"] == 1
    assert samples["labelsync_import_latency_seconds_sum"] == pytest.approx(4.2)
    assert samples['labelsync_import_latency_seconds_bucket{le="5.0"}'] == 1
    assert samples['labelsync_label_studio_errors_total{kind="auth"}'] == 1
    assert samples['labelsync_label_studio_errors_total{kind="other"}'] == 1  # no new series
    assert samples['labelsync_label_studio_errors_total{kind="timeout"}'] == 0


def test_two_daemons_in_one_process_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.tasks_created.inc()

    assert second.registry.get_sample_value("labelsync_tasks_created_total") == 0


def test_a_taken_port_is_a_clear_error(served: tuple[Metrics, MetricsServer]) -> None:
    _, server = served

    with pytest.raises(MetricsError, match=f"127.0.0.1:{server.port}"):
        Metrics().serve(f"127.0.0.1:{server.port}")


def test_closing_frees_the_port() -> None:
    server = Metrics().serve("127.0.0.1:0")
    server.close()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", server.port))  # would raise EADDRINUSE if still bound


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464))],
)
def test_addresses(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["127.0.0.1:http", "127.0.0.1:70000", "[x]:1", "::1:9464"])
def test_bad_addresses_are_refused(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(addr)
    with pytest.raises(MetricsError):  # serve() says it in one line, never a traceback
        Metrics().serve(addr)


@pytest.mark.parametrize("form", ["{port}", ":{port}"])
def test_a_bare_port_is_served_on_loopback_only(form: str) -> None:
    port = free_port()
    server = Metrics().serve(form.format(port=port))
    try:
        assert (server.host, server.port) == ("127.0.0.1", port)
        assert "labelsync_tasks_created_total" in scrape(server)
    finally:
        server.close()


def test_the_daemon_serves_a_port_only_address_and_refuses_a_taken_one(env, ls_project):
    from pathlib import Path

    Path(env["LABELSYNC_WATCH_DIR"]).mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [*LABELSYNC, "run"],
        env={**env, "LABELSYNC_METRICS_ADDR": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        samples: dict[str, float] = {}
        while not samples and time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    samples = {"up": 1.0} if b"labelsync_" in response.read() else {}
            except OSError:
                time.sleep(0.2)
        if not samples:
            process.terminate()
            raise AssertionError(f"no metrics on 127.0.0.1: {process.communicate(timeout=60)[1]}")
        # A second daemon on the same port (and its own state): one line, exit 2.
        taken = run(
            ["run"],
            {
                **env,
                "LABELSYNC_METRICS_ADDR": str(port),
                "LABELSYNC_STATE_DIR": env["LABELSYNC_STATE_DIR"] + "2",
            },
            timeout=120,
        )
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert taken.returncode == 2, taken.stderr
    assert "Traceback" not in taken.stderr
    last = taken.stderr.strip().splitlines()[-1]
    assert last.startswith("labelsync: configuration: LABELSYNC_METRICS_ADDR")
    assert f"127.0.0.1:{port}" in last


def test_an_address_that_is_not_an_address_is_one_line_exit_2(env):
    from pathlib import Path

    Path(env["LABELSYNC_WATCH_DIR"]).mkdir(parents=True, exist_ok=True)
    result = run(["run"], {**env, "LABELSYNC_METRICS_ADDR": "localhost:http"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("labelsync: configuration: LABELSYNC_METRICS_ADDR")
    )
