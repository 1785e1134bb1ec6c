"""The `labelsync` command: settings are built here, once, and handed down.

Exit codes: 0 all good; 1 some files quarantined (backfill) or invalid (validate);
2 configuration, state or connection problem (one line on stderr, no traceback).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click

from labelsync import logs
from labelsync.logs import escape
from labelsync.settings import ConfigError, Settings, load

log = logging.getLogger("labelsync")

EXIT_OK, EXIT_QUARANTINED, EXIT_CONFIG = 0, 1, 2


class _Fail(click.ClickException):
    """One line, exit code 2: a problem the user fixes, not a bug."""

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        click.echo(f"labelsync: {self.message}", err=True)


def _redacted_names(settings: Settings) -> Callable[[str], str]:
    """File names and reasons as labelsync shows them (status, a backfill's summary):
    with redaction on, through the same pattern detectors as the log's arguments."""
    from labelsync import privacy

    with _user_errors():
        return privacy.for_logs(settings.redactor(named_entities=False)) or str


@contextmanager
def _user_errors() -> Iterator[None]:
    from labelsync.delivery import Stopped
    from labelsync.labelstudio import LabelStudioError
    from labelsync.state import StateError

    try:
        yield
    except (ConfigError, StateError) as exc:
        raise _Fail(str(exc)) from None
    except LabelStudioError as exc:
        raise _Fail(f"Label Studio: {exc}") from None
    except Stopped:
        raise _Fail(
            "stopped before the run finished; the next run picks up where this one ended"
        ) from None


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    with _user_errors():
        return load(ctx.obj["config"], **overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path), help="A TOML file of settings.")
@click.version_option(package_name="labelsync")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Sync chatbot conversation files to Label Studio, exactly once, with versions."""
    ctx.obj = {"config": config}


# -- backfill ------------------------------------------------------------------------------
@cli.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Decide and report; import nothing, record nothing.")
@click.option(
    "--recheck",
    is_flag=True,
    help="Decide unchanged files again (after changing LABELSYNC_MIN_TURNS or the fields "
    "read); content already sent is still skipped.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every file's outcome.")
@click.pass_context
def backfill(
    ctx: click.Context, directory: Path | None, dry_run: bool, recheck: bool, verbose: bool
) -> None:
    """Sync every conversation file in DIRECTORY (default LABELSYNC_WATCH_DIR) once."""
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.markup import escape as markup_escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from labelsync.files import scan

    settings = _settings(ctx, watch_dir=directory)
    console = Console(stderr=True)
    logs.setup(
        "info" if verbose else "warning",
        settings.log_format,
        None if settings.log_format == "json" else RichHandler(console=console, show_path=False),
    )
    root = settings.watch_dir
    if not root.is_dir():
        raise _Fail(f"configuration: {root} is not a directory (LABELSYNC_WATCH_DIR or DIRECTORY)")
    stop = threading.Event()
    with _user_errors(), _stop_on_signals(stop), _engine(settings, stop) as engine:
        started = time.monotonic()
        tally = engine.prepare()
        files = list(scan(root, settings.patterns, settings.recursive, settings.follow_symlinks))
        readable = [f for f in files if f.stat is not None]
        if not readable:
            _nothing_to_read(root, settings, files)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(
            *columns, console=console, transient=False, disable=not console.is_terminal
        ) as progress:
            bar = progress.add_task("dry run" if dry_run else "files", total=len(files))
            retry = [] if dry_run else engine.retry_rejected()
            if recheck and not dry_run:
                with engine.state.transaction() as tx:
                    tx.reopen_all_tailed()
            tally.update(
                engine.sync(
                    files,
                    dry_run=dry_run,
                    recheck=recheck,
                    final=True,
                    force=retry,
                    progress=lambda n: progress.advance(bar, n),
                ).tally
            )
            if not stop.is_set():
                open_ = len(engine.state.tailed(open_only=True))
                if open_:
                    chats = progress.add_task("log conversations", total=open_)
                    tally.update(
                        engine.sync_tailed(
                            dry_run=dry_run, progress=lambda n: progress.advance(chats, n)
                        ).tally
                    )
        elapsed = time.monotonic() - started
        counts = engine.state.counts()
        problems = {
            status: engine.state.problems(status, limit=20)
            for status in ("quarantined", "rejected", "skipped")
        }
        if not dry_run:
            engine.state.set_meta(
                "last_backfill",
                json.dumps(
                    {"at": time.time(), "dir": str(root), "seconds": round(elapsed, 3), **tally}
                ),
            )
    _summary(console, tally, elapsed, dry_run, counts, settings.min_turns)
    if stop.is_set():
        raise _Fail("interrupted; the next run picks up where this one ended")
    shown = 0
    redact = _redacted_names(settings)
    for status, rows in problems.items():
        for path, position, reason in rows:
            if Path(path).is_relative_to(root):
                # names may hold newlines and markup: escaped for both
                where = redact(f"{path} {position}" if position else path)
                line = f"{escape(where)}: {escape(redact(reason))}"
                console.print(f"[yellow]{status}[/] {markup_escape(line)}", highlight=False)
                shown += 1
    if shown:
        ctx.exit(EXIT_QUARANTINED)


def _nothing_to_read(root: Path, settings: Settings, files: list[Any]) -> None:
    """Exit 1 with what was there instead, so a wrong pattern is seen at once."""
    from collections import Counter as Tally

    seen: Tally[str] = Tally()
    for path in root.rglob("*") if settings.recursive else root.iterdir():
        if path.is_file() and not path.name.startswith("."):
            seen[path.suffix.lower() or "(no extension)"] += 1
    what = ", ".join(f"{ext} ({n})" for ext, n in seen.most_common(8)) or "no files at all"
    skipped = f"; {len(files)} skipped (not regular files, or symlinks out)" if files else ""
    click.echo(
        f"labelsync: no conversation file to read in {root}: LABELSYNC_PATTERN is "
        f"{','.join(settings.patterns)}{skipped}; files there: {what}",
        err=True,
    )
    raise SystemExit(EXIT_QUARANTINED)


_LABELS = {
    "files": "files seen",
    "unchanged": "unchanged since last run",
    "conversations": "conversations read",
    "new_tasks": "new conversations (version 1)",
    "new_versions": "new versions (2, 3, ...)",
    "duplicates": "same content as a sent version",
    "feedback": "feedback changed, content sent before",
    "waiting": "waiting for more turns",
    "too_short": "too short, will not grow",
    "not_sampled": "not in the sample (LABELSYNC_SAMPLE_RATE)",
    "deferred": "over a cap, sent later",
    "quarantined": "quarantined or rejected in this run",
    "skipped": "skipped (not regular files, ...)",
    "changing": "still being written (next run)",
    "recovered": "recovered from Label Studio",
    "retired": "earlier versions retired (nobody had worked on them)",
    "busy": "held by another labelsync (next run)",
}


def _summary(
    console: Any,
    tally: Counter[str],
    elapsed: float,
    dry_run: bool,
    counts: dict[str, int],
    min_turns: int,
) -> None:
    from rich.table import Table

    from labelsync.engine import OUTCOMES

    table = Table(
        title=("dry run: nothing sent" if dry_run else "backfill") + f" in {elapsed:.1f} s",
        show_header=False,
    )
    for key in OUTCOMES:
        table.add_row(_LABELS[key], str(tally.get(key, 0)))
    table.add_row(
        "quarantined in all", str(counts.get("quarantined", 0) + counts.get("rejected", 0))
    )
    for key in sorted(k for k in tally if k.startswith("rule:")):
        table.add_row(f"matched rule {key[5:]!r}", str(tally[key]))
    redacted = {k[9:]: n for k, n in tally.items() if k.startswith("redacted:")}
    if redacted:
        found = ", ".join(f"{n} {kind}" for kind, n in sorted(redacted.items()))
        table.add_row("personal data redacted", found)
    console.print(table)
    short = tally.get("too_short", 0)
    if short:
        console.print(
            f"{short} conversations have fewer than LABELSYNC_MIN_TURNS={min_turns} user turns "
            "and will not grow; LABELSYNC_MIN_TURNS=1 and `labelsync backfill --recheck` "
            "would send them.",
            highlight=False,
        )


@contextmanager
def _engine(
    settings: Settings,
    stop: threading.Event,
    policy: Any = None,
    check: bool = True,
    heartbeat: Any = None,
    wait_for_state: Callable[[str, float], bool] | None = None,
) -> Iterator[Any]:
    """wait_for_state(message, delay): called while the state database is out of reach
    at start; True waits `delay` and tries again, False gives up (a stop)."""
    from labelsync.delivery import Delivery, RetryPolicy
    from labelsync.engine import Engine, EngineConfig
    from labelsync.labelstudio import LabelStudio
    from labelsync.sending import Caps

    settings.require("label_studio_api_key", "label_studio_project_id")
    assert settings.label_studio_project_id is not None
    from labelsync import privacy

    rules, redactor = settings.production_rules(), settings.redactor()
    logs.redact_arguments(privacy.for_logs(redactor))
    # Every heartbeat (the watchdog's, and those of Label Studio's requests and waits)
    # also asks the engine's leases whether an import may go on (lease.py).
    fences: list[Callable[[], None]] = []
    watchdog = heartbeat or (lambda: None)

    def beat() -> None:
        watchdog()
        for fence in fences:
            fence()

    def connect(project_id: int) -> tuple[LabelStudio, Delivery]:
        """A project's connection and retry policy: the default one, or one rules name."""
        ls = LabelStudio(
            settings.label_studio_url,
            settings.api_key,
            project_id,
            settings.timeout_seconds,
            import_timeout_s=settings.import_timeout_seconds,
            stop=stop,
            heartbeat=beat,
        )
        delivery = Delivery(
            ls,
            stop,
            policy or RetryPolicy(attempts=settings.retry_attempts),
            heartbeat=beat,
            max_request_bytes=settings.max_request_bytes,
        )
        return ls, delivery

    ls, delivery = connect(settings.label_studio_project_id)
    if check:  # a wrong key or project is one clear line before anything else happens
        delivery.call(ls.project_title)
    state, lock = _open_state(settings, wait_for_state)
    try:
        config = EngineConfig(
            root=settings.watch_dir,
            min_turns=settings.min_turns,
            batch_size=settings.batch_size,
            max_file_bytes=settings.max_file_bytes,
            options=settings.options,
            max_wait_s=settings.max_wait_seconds,
            keep_versions=settings.keep_versions,
            rules=rules,
            caps=Caps(settings.cap_per_hour, settings.cap_per_day),
            redactor=redactor,
        )
        engine = Engine(state, ls, delivery, config, stop, beat, connect=connect)
        fences.append(engine.leases.check)
        try:
            yield engine
        finally:
            engine.close()
    finally:
        state.close()
        lock.release()


class _StoppedWaiting(Exception):
    """A stop came while `run` waited for the state database at start: a clean exit."""


def _open_state(
    settings: Settings, wait: Callable[[str, float], bool] | None = None
) -> tuple[Any, Any]:
    """The configured state and what holds it (SQLite: the directory's lock), migrated:
    PostgreSQL when LABELSYNC_STATE_URL is set, else SQLite in LABELSYNC_STATE_DIR.

    wait: while PostgreSQL is out of reach (not a refusal: a wrong password is not
    retried), wait(message, delay) decides whether to try again."""
    from labelsync.state import Identity, StateUnavailable, open_state

    identity = Identity.here(settings.daemon_name)
    delay_s = 1.0
    while True:
        try:
            return open_state(
                settings.state_dir,
                settings.database_url,
                password=settings.database_password,
                pool_size=settings.state_pool_size,
                timeout_s=settings.state_timeout_seconds,
                identity=identity,
            )
        except StateUnavailable as exc:
            if wait is None:
                raise
            if not wait(str(exc), delay_s):
                raise _StoppedWaiting() from None
            delay_s = min(delay_s * 2, 30.0)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set the stop event; every wait in labelsync watches it.

    Not from a Python signal handler: it runs between two bytecodes of the main
    thread, possibly inside `stop.set()` or `stop.wait()` while they hold the
    event's lock, and setting the event there deadlocks (a SIGINT and a SIGTERM
    within a millisecond did). Python's C-level handler writes the signal's
    number to a socket (`signal.set_wakeup_fd`), which is safe anywhere; a
    thread reads it and sets the event. The Python-level handler does nothing.

    Once a signal has asked for the stop, later ones are ignored for good: the
    second of a SIGINT+SIGTERM pair may arrive after this block has ended, and
    the default action would kill the process during its last steps.
    """
    wanted = {int(signal.SIGTERM), int(signal.SIGINT)}
    signalled = threading.Event()
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # set_wakeup_fd's requirement: a full buffer drops, never blocks

    def relay() -> None:
        while data := reader.recv(64):  # b"" once `writer` is closed: done
            if wanted.intersection(data):
                signalled.set()
                stop.set()

    thread = threading.Thread(target=relay, name="labelsync-signals", daemon=True)
    thread.start()
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        writer.close()
        thread.join(5)
        reader.close()
        for sig, handler in previous.items():
            killing = handler in (signal.SIG_DFL, signal.default_int_handler)
            signal.signal(sig, signal.SIG_IGN if killing and signalled.is_set() else handler)


def _ignore(signum: int, frame: Any) -> None:
    """The Python-level handler: the wake-up socket already told the relay thread."""


# -- run -----------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--polling",
    is_flag=True,
    default=None,
    help="Poll the directory instead of inotify (network filesystems).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="json: one JSON object a line, for log shippers.",
)
@click.pass_context
def run(ctx: click.Context, polling: bool | None, log_format: str | None) -> None:
    """Watch LABELSYNC_WATCH_DIR and sync each conversation once it settles."""
    import os

    from labelsync.delivery import RetryPolicy
    from labelsync.metrics import Metrics, MetricsError
    from labelsync.run import Daemon, RunConfig
    from labelsync.sdnotify import Notifier, WatchdogPacer

    settings = _settings(ctx, polling=polling, log_format=log_format)
    logs.setup(settings.log_level, settings.log_format)
    root = settings.watch_dir
    if not root.is_dir():
        raise _Fail(f"configuration: LABELSYNC_WATCH_DIR {root} is not a directory")
    stop = threading.Event()
    metrics = Metrics() if settings.metrics_addr else None
    server = None
    # Short retries inside one sync keep the loop (and its watchdog pings) moving;
    # the daemon's own backoff takes over between syncs.
    policy = RetryPolicy(attempts=2, initial_s=0.5, max_s=2.0)
    notifier = Notifier.from_environ(os.environ)
    ping = WatchdogPacer(notifier)

    def wait_for_state(message: str, delay_s: float) -> bool:
        # PostgreSQL may start after labelsync (a reboot, a failover): wait for it
        # rather than exit, which the unit would not restart (RestartPreventExitStatus=2).
        log.warning("%s; trying again in %.0f s", message, delay_s)
        notifier.status(f"waiting for the state database: {message}")
        return not stop.wait(delay_s)

    with (
        contextlib.suppress(_StoppedWaiting),
        _user_errors(),
        _stop_on_signals(stop),
        _engine(
            settings, stop, policy, check=False, heartbeat=ping, wait_for_state=wait_for_state
        ) as engine,
    ):
        if metrics is not None and settings.metrics_addr:
            try:
                server = metrics.serve(settings.metrics_addr)
            except MetricsError as exc:
                raise _Fail(f"configuration: LABELSYNC_METRICS_ADDR: {exc}") from None
        config = RunConfig(
            quiet_s=settings.quiet_seconds,
            max_wait_s=settings.max_wait_seconds,
            settle_s=min(settings.settle_seconds, settings.quiet_seconds),
            flush_s=settings.flush_seconds,
            rescan_s=settings.rescan_seconds,
            patterns=settings.patterns,
            recursive=settings.recursive,
            follow_symlinks=settings.follow_symlinks,
            polling=settings.polling,
            polling_interval_s=settings.polling_interval_seconds,
        )
        try:
            Daemon(engine, config, stop, notifier, metrics, ping).serve()
        finally:
            if server is not None:
                server.close()


# -- status --------------------------------------------------------------------------------
_PROBLEMS = (
    ("quarantined", "quarantined"),
    ("rejected", "rejected by Label Studio (tried again every 10 min and at start)"),
    ("waiting", "waiting for more turns"),
    ("too_short", "too short (will not grow)"),
    ("deferred", "over a cap (sent when there is room)"),
    ("skipped", "skipped"),
)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="List every problem, not the first 20.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """What labelsync knows: tasks sent, backlog, last sync, quarantined files."""
    from labelsync.state import STATE_FILE, NoLock, State

    settings = _settings(ctx)
    redact = _redacted_names(settings)
    path = settings.state_dir / STATE_FILE
    if settings.database_url is None and not path.exists():
        raise _Fail(
            f"no state yet in {settings.state_dir} (run `labelsync backfill` or `labelsync run`)"
        )
    limit = None if show_all or as_json else 20
    with _user_errors():
        if settings.database_url is None:
            state, lock = State.open(path), NoLock()  # read beside a running daemon: no lock
        else:
            state, lock = _open_state(settings)
        try:
            counts = state.counts()
            report: dict[str, Any] = {
                "state_dir": str(settings.state_dir) if state.kind == "sqlite" else None,
                "state_url": state.where if state.kind == "postgresql" else None,
                "label_studio": state.get_meta("url"),
                "project_id": state.get_meta("project_id"),
                "counts": counts,
                "last_backfill": json.loads(state.get_meta("last_backfill") or "null"),
                "daemons": _daemons(state, 7 * 86400 if show_all else 86400),
                **{
                    status: [
                        {"path": redact(p), "position": at, "reason": redact(r)}
                        for p, at, r in state.problems(status, limit, every_site=True)
                    ]
                    for status, _ in _PROBLEMS
                },
            }
        finally:
            state.close()
            lock.release()
    # The daemon seen last, as `status --json` has always had it.
    report["daemon"] = report["daemons"][0] if report["daemons"] else None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"state:          {report['state_url'] or report['state_dir']}")
    click.echo(f"project:        {report['project_id'] or '-'} at {report['label_studio'] or '-'}")
    retired = f", {counts['retired']} retired" if counts.get("retired") else ""
    click.echo(
        f"conversations:  {counts.get('conversations', 0)} in "
        f"{counts.get('tasks', 0)} tasks (versions{retired})"
    )
    click.echo(
        f"read:           {counts.get('files', 0)} files; conversations: "
        f"{counts.get('synced', 0)} synced, {counts.get('waiting', 0)} waiting for more turns, "
        f"{counts.get('too_short', 0)} too short, {counts.get('quarantined', 0)} quarantined, "
        f"{counts.get('rejected', 0)} rejected"
    )
    if counts.get("not_sampled"):
        click.echo(
            f"sampling:       {counts['not_sampled']} conversations not in the sample "
            "(LABELSYNC_SAMPLE_RATE; raise it and `labelsync backfill --recheck`)"
        )
    rules_seen = {k[5:]: n for k, n in counts.items() if k.startswith("rule:")}
    for rule, n in sorted(rules_seen.items()):
        click.echo(f"rule:           {rule!r} matched {n} conversations")
    projects = {k[8:]: n for k, n in counts.items() if k.startswith("project:")}
    if len(projects) > 1:
        for project, n in sorted(projects.items()):
            click.echo(f"project {project}:     {n} tasks")
    if counts.get("open_tailed"):
        click.echo(
            f"logs:           {counts['open_tailed']} conversations with new lines to decide"
        )
    click.echo(f"outbox:         {counts.get('outbox', 0)} imports of unknown outcome")
    if report["last_backfill"]:
        b = report["last_backfill"]
        click.echo(
            f"last backfill:  {_ago(b['at'])}: {b.get('new_tasks', 0)} new tasks, "
            f"{b.get('new_versions', 0)} new versions in {b['seconds']} s"
        )
    daemons = report["daemons"]
    if len(daemons) > 1:
        click.echo(f"daemons:        {len(daemons)} seen in the last day")
    for d in daemons:
        who = f"{escape(d['name'])} (pid {d['pid']})"
        state_ = d["status"]
        if state_ == "running" and d["seen_s_ago"] > _SILENT_S:
            state_ = "silent (killed, or cut off from the state?)"
        click.echo(
            f"daemon:         {who}: {state_} (updated {_ago(d['at'])}), "
            f"backlog {d['backlog']}, watch dir {escape(d['watch_dir'] or '?')}"
        )
        last = _ago(d["last_sync"]) if d.get("last_sync") else "not yet"
        totals = d.get("totals") or {}
        click.echo(
            f"last sync:      {last}; since start {totals.get('new_tasks', 0)} new tasks, "
            f"{totals.get('new_versions', 0)} new versions"
        )
        if d.get("last_error"):
            click.echo(f"last error:     {escape(d['last_error'])}")
    for status_, label in _PROBLEMS:
        rows = report[status_]
        for row in rows:
            where = f"{row['path']} {row['position']}" if row["position"] else row["path"]
            click.echo(f"{label}: {escape(where)}: {escape(row['reason'])}")
        total = counts.get(status_, 0)
        if limit is not None and total > len(rows) and rows:
            click.echo(f"{label}: ... and {total - len(rows)} more (labelsync status --all)")
    if counts.get("too_short"):
        click.echo(
            "hint: conversations too short are sent with a lower LABELSYNC_MIN_TURNS "
            "and `labelsync backfill --recheck`"
        )


# A running daemon publishes every 5 s: one not heard of for this long is gone or cut off.
_SILENT_S = 60.0


def _daemons(state: Any, within_s: float) -> list[dict[str, Any]]:
    """The daemons of this state seen recently, most recent first. `at` is when each was
    seen by this machine's clock (the state keeps the database's, the same for all)."""
    now = time.time()
    return [
        {
            "name": record.name,
            "pid": record.pid,
            "status": record.status,
            "at": now - ago,
            "seen_s_ago": round(ago, 1),
            "started_at": record.started_at,
            "backlog": record.backlog,
            "last_sync": record.last_sync,
            "last_error": record.last_error,
            "watch_dir": record.watch_dir,
            "totals": record.totals,
        }
        for record, ago in state.daemons(within_s)
    ]


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# -- state ---------------------------------------------------------------------------------
@cli.group("state")
def state_group() -> None:
    """The state: bring its schema up to date, move it into PostgreSQL."""


@state_group.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the state's schema up to date (every start does it too).

    The state is LABELSYNC_STATE_URL's PostgreSQL database when it is set, else the
    SQLite state in LABELSYNC_STATE_DIR. Migrations run in order, in one transaction.
    """
    from labelsync.state import SCHEMA_VERSION

    settings = _settings(ctx)
    with _user_errors():
        state, lock = _open_state(settings)
        found, where = state.schema_found, state.where
        state.close()
        lock.release()
    if found == SCHEMA_VERSION:
        click.echo(f"{where}: schema {SCHEMA_VERSION}, up to date")
    elif found == 0:
        click.echo(f"{where}: created at schema {SCHEMA_VERSION}")
    else:
        click.echo(f"{where}: migrated from schema {found} to {SCHEMA_VERSION}")


@state_group.command("import")
@click.option(
    "--from",
    "source_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The state directory of the single-host labelsync (its LABELSYNC_STATE_DIR).",
)
@click.pass_context
def import_state(ctx: click.Context, source_dir: Path) -> None:
    """Move a SQLite state into LABELSYNC_STATE_URL's PostgreSQL: nothing is sent again.

    Stop the labelsync using SOURCE_DIR first (its lock is taken for the copy). Every
    table is copied in one transaction into a database that holds no state yet.
    """
    from labelsync.state import STATE_FILE, open_state_dir
    from labelsync.state_import import import_state as copy_state

    settings = _settings(ctx)
    if settings.database_url is None:
        raise _Fail("state import: set LABELSYNC_STATE_URL to the PostgreSQL state to fill")
    if not (source_dir / STATE_FILE).is_file():
        raise _Fail(f"state import: no labelsync state in {source_dir} (no {STATE_FILE} there)")
    shown: dict[str, int] = {}

    def progress(table: str, rows: int) -> None:
        if rows - shown.get(table, 0) >= 50_000 or table not in shown:
            click.echo(f"  {table}: {rows} rows", err=True)
            shown[table] = rows

    with _user_errors():
        source, lock = open_state_dir(source_dir)
        try:
            target, _ = _open_state(settings)
            try:
                click.echo(f"importing {source.where} into {target.where}", err=True)
                result = copy_state(source, target, progress)
            finally:
                target.close()
        finally:
            source.close()
            lock.release()
    counts = ", ".join(f"{table} {n}" for table, n in result.rows.items())
    if result.already:
        click.echo(f"already imported (the same {result.rows['versions']} versions): {counts}")
        return
    click.echo(f"imported in {result.seconds:.1f} s: {counts}")
    click.echo(
        f"labelsync now runs with LABELSYNC_STATE_URL; keep {source_dir} aside as a backup "
        "and run no labelsync on it any more",
        err=True,
    )


# -- validate ------------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--show", is_flag=True, help="Print the first conversation as the task will hold it.")
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...], show: bool) -> None:
    """Say what labelsync reads in each file, and exactly what is wrong."""
    from labelsync import privacy
    from labelsync.files import TooLarge, Unreadable, Unsettled
    from labelsync.inspect import inspect
    from labelsync.task import draft_task

    settings = _settings(ctx)
    with _user_errors():
        redactor = settings.redactor()
        # Without a project id the rules still say what they would do, to "the default".
        if settings.label_studio_project_id is None:
            settings = settings.model_copy(update={"label_studio_project_id": 1})
            default_named = False
        else:
            default_named = True
        rules = settings.production_rules()
    bad = 0
    for path in files:
        try:
            report = inspect(path, settings.options, settings.max_file_bytes)
        except (TooLarge, Unsettled, Unreadable, OSError) as exc:
            bad += 1
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            click.echo(f"{escape(str(path))}: invalid: {escape(reason)}")
            continue
        if report.count == 0:
            bad += 1
            reason = report.problems[0][1] if report.problems else "no conversation in it"
            where = (
                f" ({report.problems[0][0]})" if report.problems and report.problems[0][0] else ""
            )
            click.echo(f"{escape(str(path))}: invalid{where}: {escape(reason)}")
            for position, why in report.problems[1:10]:
                click.echo(f"{escape(str(path))}: {position}: {escape(why)}")
            continue
        shapes = ", ".join(
            f"{shape} ({n})" if len(report.shapes) > 1 else shape
            for shape, n in report.shapes.most_common()
        )
        if report.count == 1 and not report.problems:
            c = report.conversations[0]
            click.echo(
                f"{path}: ok: {shapes} shape, conversation {c.thread_id!r}, "
                f"{len(c.messages)} messages, {c.user_turns} user turns, sync key {c.sync_key}"
            )
        else:
            click.echo(
                f"{path}: ok: {shapes} shape, {report.count} conversations"
                + (f", {len(report.problems)} could not be read" if report.problems else "")
            )
        for position, why in report.problems[:20]:
            click.echo(f"{escape(str(path))}: {position}: {escape(why)}")
        if len(report.problems) > 20:
            click.echo(f"{path}: ... and {len(report.problems) - 20} more")
        short = [c for c in report.conversations if c.user_turns < settings.min_turns]
        if report.count == 1 and short:
            c = short[0]
            grows = not (c.final or c.ended)
            why = "sent when it grows" if grows else "it will not grow: reported too short"
            click.echo(
                f"{path}: note: waits until it has {settings.min_turns} user turns "
                f"(LABELSYNC_MIN_TURNS); {why}"
            )
        elif short:
            click.echo(
                f"{path}: note: {len(short)} of the first {len(report.conversations)} have fewer "
                f"than {settings.min_turns} user turns (LABELSYNC_MIN_TURNS): they wait, or are "
                "reported too short when they cannot grow"
            )
        for warning in report.warnings[:10]:
            click.echo(f"{escape(str(path))}: note: {escape(warning)}")
        roles = {m.role for c in report.conversations for m in c.messages}
        unknown = roles - {"user", "assistant", "system", "tool"}
        if unknown:
            click.echo(
                f"{path}: note: unknown roles {sorted(unknown)} are shown as they are "
                "(LABELSYNC_ROLE_MAP maps them)"
            )
        if (show or rules.rules or rules.sample_rate < 1) and report.conversations:
            for c in report.conversations[: 10 if show else 3]:
                routing = rules.route(privacy.identity(c, redactor))
                where = routing.reason
                if not default_named:
                    where = where.replace("project 1 ", "the default project ")
                click.echo(f"{escape(str(path))}: {escape(c.thread_id)}: {escape(where)}")
        if show and report.conversations:
            first = privacy.identity(report.conversations[0], redactor)
            shown, file_name, counts = privacy.shown(first, path.name, redactor)
            redaction = redactor.config_id if redactor.enabled else None
            task = draft_task(first, file_name, shown, redaction).numbered(1)
            if redactor.enabled:
                found = ", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "nothing"
                click.echo(f"{escape(str(path))}: redacted: {found}")
            click.echo(json.dumps(task, indent=2, ensure_ascii=False))
        if report.problems:
            bad += 1
    ctx.exit(EXIT_QUARANTINED if bad else EXIT_OK)


# -- init-project --------------------------------------------------------------------------
@cli.command("init-project")
@click.option(
    "--template",
    default="community",
    show_default=True,
    help="community, enterprise (the <Chat> tag; paid editions only) or a path to an XML file.",
)
@click.option("--title", default="Chatbot conversation evaluation", show_default=True)
@click.option(
    "--rules",
    "for_rules",
    is_flag=True,
    help="Create the projects the [[rules]] of the --config file name by title, if missing.",
)
@click.pass_context
def init_project(ctx: click.Context, template: str, title: str, for_rules: bool) -> None:
    """Create the evaluation project in Label Studio and print its id."""
    from labelsync.labelstudio import LabelStudio

    settings = _settings(ctx)
    with _user_errors():
        settings.require("label_studio_api_key")
    label_config = load_template(template)
    ls = LabelStudio(settings.label_studio_url, settings.api_key, 0, settings.timeout_seconds)
    description = "Conversations synced by labelsync. One task per version."
    if for_rules:
        titles = sorted(
            {str(r["project"]) for r in settings.rules if isinstance(r.get("project"), str)}
        )
        if not titles:
            raise _Fail("configuration: the --config file's [[rules]] name no project by title")
        with _user_errors():
            existing = ls.project_ids_by_title()
            for name in titles:
                if name in existing:
                    click.echo(f"{existing[name]}\t{name} (exists)")
                    continue
                project_id = ls.create_project(name, label_config, description)
                _create_view(settings, project_id)
                click.echo(f"{project_id}\t{name}")
        return
    with _user_errors():
        project_id = ls.create_project(title, label_config, description)
        _create_view(settings, project_id)
    click.echo(project_id)
    click.echo(
        f"created project {project_id} at {settings.label_studio_url}/projects/{project_id}; "
        f"set LABEL_STUDIO_PROJECT_ID={project_id}",
        err=True,
    )


def _create_view(settings: Settings, project_id: int) -> None:
    """The Data Manager tab annotators land on: conversation, version, latest, turns,
    model, feedback first; the dialogue and bookkeeping hidden. Made before anyone opens
    the project, or Label Studio makes its own default tab first."""
    from labelsync.labelstudio import LabelStudio, LabelStudioError
    from labelsync.task import COLUMN_WIDTHS, COLUMNS, COLUMNS_BESIDE_LABELING, DATA_KEYS

    ls = LabelStudio(
        settings.label_studio_url, settings.api_key, project_id, settings.timeout_seconds
    )
    try:
        ls.create_view("Conversations", COLUMNS, COLUMNS_BESIDE_LABELING, COLUMN_WIDTHS, DATA_KEYS)
    except LabelStudioError as exc:  # the project works without it: say so, go on
        click.echo(
            f"labelsync: the project works, but its Data Manager view was not made: {exc}", err=True
        )


# -- export --------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["messages", "sft", "kto"]),
    required=True,
    help="messages: a row per judged message; sft: {messages} of well-rated conversations; "
    "kto: {prompt, completion, label} per judged assistant reply.",
)
@click.option(
    "--min-rating",
    type=click.FloatRange(1, 5),
    default=None,
    help="sft: the least mean conversation rating kept (default 4).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here (replaced only once the export is whole); default: stdout.",
)
@click.pass_context
def export(ctx: click.Context, fmt: str, min_rating: float | None, out: Path | None) -> None:
    """Write the project's annotations as JSON Lines, for training or analysis."""
    from labelsync import export as exporting

    if min_rating is not None and fmt != "sft":
        raise _Fail("--min-rating applies to --format sft only")
    settings = _settings(ctx)
    tally: Counter[str] = Counter()
    with (
        _user_errors(),
        _annotated(settings, "export") as (template, annotators, pages),
        _progress("tasks") as advance,
        _output(out) as stream,
    ):
        exporting.write(
            exporting.read_tasks(pages(advance), template, tally),
            fmt,
            stream,
            annotators=annotators,
            min_rating=exporting.DEFAULT_MIN_RATING if min_rating is None else min_rating,
            tally=tally,
        )
    _export_counts(fmt, tally, out)
    if not tally["rows"] or tally["not_ours"]:
        ctx.exit(EXIT_QUARANTINED)


def _export_counts(fmt: str, tally: Counter[str], out: Path | None) -> None:
    parts = [
        f"{tally['tasks']} annotated tasks read",
        f"{tally['annotations']} annotations",
    ]
    if tally["not_ours"]:
        parts.append(f"{tally['not_ours']} tasks skipped (not made by labelsync)")
    if tally["skipped_only"]:
        parts.append(f"{tally['skipped_only']} tasks with only skipped or empty annotations")
    if fmt == "sft":
        parts.append(
            f"{tally['conversations']} conversations (latest annotated version): "
            f"{tally['sft_kept']} kept, {tally['sft_below']} rated below --min-rating, "
            f"{tally['sft_unrated']} without a conversation rating"
        )
    elif fmt == "kto":
        parts.append(
            f"{tally['conversations']} conversations (latest annotated version): "
            f"{tally['kto_desirable']} desirable, {tally['kto_undesirable']} undesirable, "
            f"{tally['kto_undecided']} replies neither"
        )
    where = f" to {out}" if out else ""
    parts.append(f"{tally['rows']} rows written{where}")
    click.echo("labelsync export: " + "; ".join(parts), err=True)
    if not tally["rows"]:
        click.echo("labelsync export: nothing to export", err=True)


@contextmanager
def _annotated(settings: Settings, what: str) -> Iterator[Any]:
    """The project's template, its annotators' names, and its annotated tasks, page by page.

    Reads are retried like backfill's (LABELSYNC_RETRY_ATTEMPTS); SIGINT or SIGTERM
    stops at once, and a file given with --out is then not written.
    """
    from labelsync.annotations import UnknownConfig, template_of
    from labelsync.delivery import Delivery, RetryPolicy, Stopped
    from labelsync.labelstudio import LabelStudio, LabelStudioError

    settings.require("label_studio_api_key", "label_studio_project_id")
    assert settings.label_studio_project_id is not None
    stop = threading.Event()
    ls = LabelStudio(
        settings.label_studio_url,
        settings.api_key,
        settings.label_studio_project_id,
        settings.timeout_seconds,
        stop=stop,
    )
    delivery = Delivery(ls, stop, RetryPolicy(attempts=settings.retry_attempts))
    with _stop_on_signals(stop):
        try:
            try:
                template = template_of(delivery.call(ls.label_config))
            except UnknownConfig as exc:
                raise _Fail(
                    f"{what}: project {settings.label_studio_project_id}: {escape(str(exc))}"
                ) from None
            try:
                annotators = delivery.call(ls.users)
            except LabelStudioError:  # a key that may not list users: ids name them
                annotators = {}

            def pages(advance: Any) -> Iterator[Any]:
                for page in _read_ahead(ls.annotated_pages(call=delivery.call), stop):
                    advance(len(page.tasks), page.remaining)
                    yield page

            yield template, annotators, pages
        except Stopped:
            raise _Fail(f"{what}: interrupted (a file given with --out is not written)") from None


def _read_ahead(pages: Iterator[Any], stop: threading.Event) -> Iterator[Any]:
    """The next page is asked for while this one is written: Label Studio's time and
    ours overlap instead of adding up. One thread makes every request, in order, so
    the connection still has one exchange at a time; at most two pages wait."""
    import contextlib
    import queue

    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    done = object()

    def fetch() -> None:
        try:
            for page in pages:
                ready.put(("page", page))
                if stop.is_set():
                    return
            ready.put(("end", done))
        except BaseException as exc:  # handed to the reader, who raises it
            ready.put(("error", exc))

    thread = threading.Thread(target=fetch, name="labelsync-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "error":
                raise item
            if kind == "end":
                return
            yield item
    finally:
        stop.set()  # a reader that gave up (an error, a stop): the fetcher ends too
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)  # make room, so a waiting put() returns
        thread.join()


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; advance(n, remaining_from_here)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=console, disable=not console.is_terminal
    ) as progress:
        bar = progress.add_task(label, total=None)
        done = 0

        def advance(n: int, remaining: int) -> None:
            nonlocal done
            progress.update(bar, total=done + remaining, completed=done + n)
            done += n

        yield advance


@contextmanager
def _output(out: Path | None) -> Iterator[Any]:
    """stdout, or a file that appears whole: written beside it, renamed at the end."""
    import os
    import sys

    if out is None:
        if hasattr(sys.stdout, "reconfigure"):  # JSON Lines are UTF-8 whatever the locale
            sys.stdout.reconfigure(encoding="utf-8")
        try:
            yield sys.stdout
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has had enough
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(EXIT_OK) from None
        return
    partial = out.with_name(f".{out.name}.partial")
    try:
        stream = open(partial, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise _Fail(f"--out {escape(str(out))}: {exc.strerror}") from None
    try:
        with stream:
            yield stream
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


# -- report --------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="The HTML page (self-contained: it opens with no network).",
)
@click.pass_context
def report(ctx: click.Context, out: Path) -> None:
    """Summarise the annotations: a terminal summary and an HTML page with charts."""
    from labelsync.export import read_tasks
    from labelsync.report import Summary

    try:
        from labelsync import report_html
    except ImportError as exc:  # matplotlib is an extra
        raise _Fail(
            f"labelsync report draws its charts with matplotlib ({exc.name} is missing): "
            "pip install 'labelsync[report]'"
        ) from None
    settings = _settings(ctx)
    tally: Counter[str] = Counter()
    summary = Summary()
    with _user_errors(), _annotated(settings, "report") as (template, _, pages):
        with _progress("tasks") as advance:
            for task in read_tasks(pages(advance), template, tally):
                summary.add(task)
        assert settings.label_studio_project_id is not None
        link = report_html.task_link(settings.label_studio_url, settings.label_studio_project_id)
        title = f"Annotations of project {settings.label_studio_project_id}"
        with _output(out) as stream:
            stream.write(report_html.page(summary, title, link))
    _report_summary(summary, tally, out, link)
    if not summary.tasks or tally["not_ours"]:
        ctx.exit(EXIT_QUARANTINED)


def _report_summary(summary: Any, tally: Counter[str], out: Path, link: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from labelsync.report import ANSWERS
    from labelsync.report_html import AGREEMENT_LABELS

    console = Console(highlight=False)

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    console.print(
        f"{summary.tasks:,} annotated tasks, {summary.annotations:,} annotations by "
        f"{len(summary.annotators)} annotators"
        + (
            f"; {tally['not_ours']} tasks skipped (not made by labelsync)"
            if tally["not_ours"]
            else ""
        ),
        markup=False,
    )
    if not summary.tasks:
        console.print("nothing to report yet: no task has a submitted annotation", markup=False)
    per_model = Table(title="per model")
    for column in ("model", "tasks", "mean rating", *ANSWERS, "clarity", "accuracy"):
        per_model.add_column(column, justify="left" if column == "model" else "right")
    for model, g in sorted(summary.by_model.items()):
        per_model.add_row(  # Text: a model's name is shown as it is, never read as markup
            Text(escape(model)),
            str(g.tasks),
            f(g.rating.mean),
            *(str(g.answered[a]) for a in ANSWERS),
            f(g.clarity.mean),
            f(g.accuracy.mean),
        )
    if summary.tasks:
        console.print(per_model, markup=False)
    for name, alpha in summary.agreement.items():
        label, kind, units = AGREEMENT_LABELS[name]
        value = alpha.value()
        shown = "n/a" if value is None else f"{value:.3f}"
        console.print(
            f"agreement on the {label} (Krippendorff's alpha, {kind}): {shown}, "
            f"on {alpha.units:,} {units} with two or more annotations",
            markup=False,
        )
    for r in summary.worst()[:5]:
        console.print(
            f"worst: {r.score:.1f} {escape(r.thread_id)} v{r.version} #{r.index} "
            f"({escape(r.model)}): {link(r.task_id)}",
            markup=False,
        )
    console.print(f"report: {out}", markup=False)


def load_template(template: str) -> str:
    if template in ("community", "enterprise"):
        return resources.files("labelsync").joinpath("templates", f"{template}.xml").read_text()
    path = Path(template)
    if not path.is_file():
        raise _Fail(f"--template {template}: not community, enterprise or an existing file")
    return path.read_text()


def main() -> None:
    cli(prog_name="labelsync")


if __name__ == "__main__":
    main()
