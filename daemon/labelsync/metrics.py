"""Prometheus metrics for watch mode, served only when an address is configured.

The daemon always counts into a ``Metrics`` (cheap), and serves it only when
``LABELSYNC_METRICS_ADDR`` is set, so the engine needs no "metrics off" branch.
Each ``Metrics`` has its own ``CollectorRegistry``: the global default one
would collide when tests build several daemons in one process, and would also
export the process/GC collectors nobody asked for.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# A closed set of labels, so a surprise error cannot create unbounded series.
LABEL_STUDIO_ERROR_KINDS = (
    "unreachable",
    "timeout",
    "auth",
    "rejected",
    "server",
    "throttled",
    "other",
)

# From a fast import (sub-second) to a file held back by max_wait (minutes).
_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class MetricsError(Exception):
    """The endpoint could not be served where configured."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Counter names get "_total" appended by the client library.
        self.files_seen = Counter(
            "labelsync_files_seen", "Conversation files read after settling.", registry=r
        )
        self.tasks_created = Counter(
            "labelsync_tasks_created", "Tasks created in Label Studio.", registry=r
        )
        self.versions = Counter(
            "labelsync_versions",
            "Tasks that are a new version (2 or more) of a conversation already sent.",
            registry=r,
        )
        self.duplicates_skipped = Counter(
            "labelsync_duplicates_skipped",
            "Files whose content was already sent, so nothing was created.",
            registry=r,
        )
        self.quarantined = Counter(
            "labelsync_quarantined", "Files put in quarantine (invalid or too large).", registry=r
        )
        self.backlog = Gauge(
            "labelsync_backlog_files", "Files waiting to settle or to be sent.", registry=r
        )
        self.import_latency = Histogram(
            "labelsync_import_latency_seconds",
            "Seconds from a file's last change to its task being created in Label Studio.",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self._label_studio_errors = Counter(
            "labelsync_label_studio_errors",
            "Failed Label Studio requests, by kind.",
            ["kind"],
            registry=r,
        )
        for kind in LABEL_STUDIO_ERROR_KINDS:  # export zeros, so rate() works from the start
            self._label_studio_errors.labels(kind=kind)
        self.not_sampled = Counter(
            "labelsync_not_sampled",
            "Conversations left out by the sample rate (LABELSYNC_SAMPLE_RATE).",
            registry=r,
        )
        self.deferred = Counter(
            "labelsync_deferred", "Conversations held back by a cap, to send later.", registry=r
        )
        self.retired = Counter(
            "labelsync_retired", "Earlier versions taken out of the project.", registry=r
        )
        # Labels are the rule names of the config file and the detector names: a closed set.
        self.rule_matches = Counter(
            "labelsync_rule_matches", "Conversations a rule matched, by rule.", ["rule"], registry=r
        )
        self.redacted = Counter(
            "labelsync_redacted",
            "Values replaced by a placeholder before sending, by detector.",
            ["detector"],
            registry=r,
        )

    def label_studio_error(self, kind: str) -> None:
        """Count an error: unreachable, timeout, auth (401/403), rejected (4xx), server (5xx)."""
        self._label_studio_errors.labels(
            kind=kind if kind in LABEL_STUDIO_ERROR_KINDS else "other"
        ).inc()

    def serve(self, addr: str = "127.0.0.1:9464") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` (``[v6]:port`` for IPv6, a bare port on
        loopback) in a daemon thread."""
        try:
            host, port = parse_addr(addr)
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except ValueError as exc:
            raise MetricsError(str(exc)) from None
        except OSError as exc:  # taken, not ours to bind, or a host name that does not resolve
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise MetricsError(f"cannot serve metrics on {addr}: {reason}") from None
        bound_host, bound_port = server.server_address[:2]
        log.info("metrics on http://%s/metrics", _join(str(bound_host), int(bound_port)))
        return MetricsServer(server, thread, str(bound_host), int(bound_port))


@dataclass
class MetricsServer:
    _server: WSGIServer
    _thread: threading.Thread
    host: str
    port: int  # the real port, also when 0 ("any free port") was asked for

    @property
    def url(self) -> str:
        return f"http://{_join(self.host, self.port)}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# A bare port (9464 or :9464) is served on loopback: the endpoint has no
# authentication, so listening on every interface must be asked for (0.0.0.0:9464).
_DEFAULT_HOST = "127.0.0.1"


def parse_addr(addr: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``port``; raise ValueError with a readable reason."""
    addr = addr.strip()
    host, sep, port_text = addr.rpartition(":")
    if not sep:
        host, port_text = _DEFAULT_HOST, addr
    elif not host:
        host = _DEFAULT_HOST
    if host.count(":") and not host.startswith("["):
        raise ValueError(f"metrics address {addr!r}: write an IPv6 address as [v6]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError naming the bad address
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics port in {addr!r} must be a number from 0 to 65535")
    return host, int(port_text)


def normalise_addr(addr: str) -> str:
    """The address as it will be bound (``9464`` -> ``127.0.0.1:9464``), or ValueError."""
    return _join(*parse_addr(addr))


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
