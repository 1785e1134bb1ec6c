"""The `labelsync` command: settings are built here, once, and handed down.

Exit codes: 0 all good; 1 some files quarantined (backfill) or invalid (validate);
2 configuration, state or connection problem (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click

from labelsync import logs
from labelsync.settings import ConfigError, Settings, load

log = logging.getLogger("labelsync")

EXIT_OK, EXIT_QUARANTINED, EXIT_CONFIG = 0, 1, 2


class _Fail(click.ClickException):
    """One line, exit code 2: a problem the user fixes, not a bug."""

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        click.echo(f"labelsync: {self.message}", err=True)


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
        recovered = engine.prepare()
        files = list(scan(root, settings.pattern, settings.recursive))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(
            *columns, console=console, transient=False, disable=not console.is_terminal
        ) as progress:
            bar = progress.add_task("dry run" if dry_run else "syncing", total=len(files))
            tally = engine.sync(
                files,
                dry_run=dry_run,
                recheck=recheck,
                progress=lambda n: progress.advance(bar, n),
            ).tally
        tally.update(recovered)
        elapsed = time.monotonic() - started
        quarantined = engine.state.problem_files("quarantined")
        if not dry_run:
            engine.state.set_meta(
                "last_backfill",
                json.dumps(
                    {"at": time.time(), "dir": str(root), "seconds": round(elapsed, 3), **tally}
                ),
            )
    _summary(console, tally, elapsed, dry_run, len(quarantined))
    if stop.is_set():
        raise _Fail("interrupted; the next run picks up where this one ended")
    in_root = [(p, r) for p, r in quarantined if Path(p).is_relative_to(root)]
    for path, reason in in_root[:20]:
        console.print(f"[yellow]quarantined[/] {path}: {reason}", highlight=False)
    if in_root:
        ctx.exit(EXIT_QUARANTINED)


def _summary(console: Any, tally: Counter[str], elapsed: float, dry_run: bool, q: int) -> None:
    from rich.table import Table

    from labelsync.engine import OUTCOMES

    labels = {
        "files": "files seen",
        "unchanged": "unchanged since last run",
        "new_tasks": "new conversations (version 1)",
        "new_versions": "new versions (2, 3, ...)",
        "duplicates": "same content as a sent version",
        "waiting": "waiting for more turns",
        "quarantined": "quarantined in this run",
        "changing": "still being written (next run)",
        "recovered": "recovered from Label Studio",
    }
    table = Table(
        title=("dry run: nothing sent" if dry_run else "backfill") + f" in {elapsed:.1f} s",
        show_header=False,
    )
    for key in OUTCOMES:
        table.add_row(labels[key], str(tally.get(key, 0)))
    table.add_row("quarantined files in all", str(q))
    console.print(table)


@contextmanager
def _engine(
    settings: Settings,
    stop: threading.Event,
    policy: Any = None,
    check: bool = True,
    heartbeat: Any = None,
) -> Iterator[Any]:
    from labelsync.delivery import Delivery, RetryPolicy
    from labelsync.engine import Engine, EngineConfig
    from labelsync.labelstudio import LabelStudio
    from labelsync.state import open_state_dir

    settings.require("label_studio_api_key", "label_studio_project_id")
    assert settings.label_studio_project_id is not None
    beat = heartbeat or (lambda: None)
    ls = LabelStudio(
        settings.label_studio_url,
        settings.api_key,
        settings.label_studio_project_id,
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
    if check:  # a wrong key or project is one clear line before anything else happens
        delivery.call(ls.project_title)
    state, lock = open_state_dir(settings.state_dir)
    try:
        config = EngineConfig(
            root=settings.watch_dir,
            min_turns=settings.min_turns,
            batch_size=settings.batch_size,
            max_file_bytes=settings.max_file_bytes,
            fields=settings.fields,
        )
        yield Engine(state, ls, delivery, config, stop, beat)
    finally:
        state.close()
        lock.release()


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
    with (
        _user_errors(),
        _stop_on_signals(stop),
        _engine(settings, stop, policy, check=False, heartbeat=ping) as engine,
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
            pattern=settings.pattern,
            recursive=settings.recursive,
            polling=settings.polling,
            polling_interval_s=settings.polling_interval_seconds,
        )
        try:
            Daemon(engine, config, stop, notifier, metrics, ping).serve()
        finally:
            if server is not None:
                server.close()


# -- status --------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What labelsync knows: tasks sent, backlog, last sync, quarantined files."""
    from labelsync.state import STATE_FILE, State

    settings = _settings(ctx)
    path = settings.state_dir / STATE_FILE
    if not path.exists():
        raise _Fail(
            f"no state yet in {settings.state_dir} (run `labelsync backfill` or `labelsync run`)"
        )
    with _user_errors():
        state = State.open(path)
    try:
        report: dict[str, Any] = {
            "state_dir": str(settings.state_dir),
            "label_studio": state.get_meta("url"),
            "project_id": state.get_meta("project_id"),
            "counts": state.counts(),
            "last_backfill": json.loads(state.get_meta("last_backfill") or "null"),
            "daemon": json.loads(state.get_meta("daemon") or "null"),
            "quarantined": [
                {"path": p, "reason": r} for p, r in state.problem_files("quarantined")
            ],
            "waiting": [{"path": p, "reason": r} for p, r in state.problem_files("waiting")],
        }
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    counts = report["counts"]
    click.echo(f"state:          {report['state_dir']}")
    click.echo(f"project:        {report['project_id'] or '-'} at {report['label_studio'] or '-'}")
    click.echo(
        f"conversations:  {counts.get('conversations', 0)} in "
        f"{counts.get('tasks', 0)} tasks (versions)"
    )
    click.echo(
        f"files:          {counts.get('files_synced', 0)} synced, "
        f"{counts.get('files_waiting', 0)} waiting for more turns, "
        f"{counts.get('files_quarantined', 0)} quarantined"
    )
    click.echo(f"outbox:         {counts.get('outbox', 0)} imports of unknown outcome")
    if report["last_backfill"]:
        b = report["last_backfill"]
        click.echo(
            f"last backfill:  {_ago(b['at'])}: {b.get('new_tasks', 0)} new tasks, "
            f"{b.get('new_versions', 0)} new versions in {b['seconds']} s"
        )
    if report["daemon"]:
        d = report["daemon"]
        click.echo(
            f"daemon:         {d.get('status', '?')} (updated {_ago(d.get('at', 0))}), "
            f"backlog {d.get('backlog', 0)} files, watch dir {d.get('watch_dir', '?')}"
        )
        last = _ago(d["last_sync"]) if d.get("last_sync") else "not yet"
        totals = d.get("totals") or {}
        click.echo(
            f"last sync:      {last}; since start {totals.get('new_tasks', 0)} new tasks, "
            f"{totals.get('new_versions', 0)} new versions"
        )
        if d.get("last_error"):
            click.echo(f"last error:     {d['last_error']}")
    for item in report["quarantined"]:
        click.echo(f"quarantined:    {item['path']}: {item['reason']}")


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# -- validate ------------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check conversation files against the contract and say exactly what is wrong."""
    from labelsync.contract import InvalidConversation, parse
    from labelsync.files import TooLarge, Unsettled, read_stable

    settings = _settings(ctx)
    bad = 0
    for path in files:
        try:
            read = read_stable(path, settings.max_file_bytes)
            conversation = parse(read.raw, path.name, settings.fields)
        except (InvalidConversation, TooLarge, Unsettled, OSError) as exc:
            bad += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            click.echo(f"{path}: invalid: {reason}")
            continue
        turns = conversation.user_turns
        click.echo(
            f"{path}: ok: {conversation.shape} shape, conversation {conversation.thread_id!r}, "
            f"{len(conversation.messages)} messages, {turns} user turns, "
            f"sync key {conversation.sync_key}"
        )
        if turns < settings.min_turns:
            click.echo(
                f"{path}: note: waits until it has {settings.min_turns} user turns "
                "(LABELSYNC_MIN_TURNS)"
            )
        roles = {m.role for m in conversation.messages} - {"user", "assistant", "system", "tool"}
        if roles:
            click.echo(f"{path}: note: unknown roles {sorted(roles)} are shown as they are")
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
@click.pass_context
def init_project(ctx: click.Context, template: str, title: str) -> None:
    """Create the evaluation project in Label Studio and print its id."""
    from labelsync.labelstudio import LabelStudio

    settings = _settings(ctx)
    with _user_errors():
        settings.require("label_studio_api_key")
    label_config = load_template(template)
    ls = LabelStudio(settings.label_studio_url, settings.api_key, 0, settings.timeout_seconds)
    with _user_errors():
        project_id = ls.create_project(
            title, label_config, "Conversations synced by labelsync. One task per version."
        )
    click.echo(project_id)
    click.echo(
        f"created project {project_id} at {settings.label_studio_url}/projects/{project_id}; "
        f"set LABEL_STUDIO_PROJECT_ID={project_id}",
        err=True,
    )


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
