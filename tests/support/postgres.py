"""A real PostgreSQL for the tests: Debian's binaries, a temporary cluster, loopback only.

PostgreSQL refuses to run as root, so when the tests run as root (CI here) the
cluster belongs to the unprivileged `postgres` user Debian's package creates:
`initdb` and `pg_ctl` run through `runuser -u postgres --`, and the data sits in
a temporary directory owned by that user. As any other user they run directly.

Connections the product makes go over TCP to 127.0.0.1 with a password (SCRAM),
as a deployment's would; the tests' own administration (roles, databases) goes
over the Unix socket in the temporary directory, where `trust` lets the owner in.

    python -m tests.support.postgres    start one, print its URL, stop on Ctrl-C
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.labelstudio import free_port
from tests.support.managed import Managed

ROLE = "labelsync"  # the role the product connects as, with a password


def find_bin() -> Path:
    """The newest installed server's binaries (`make test` installs Debian's `postgresql`)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "`make test` installs it (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def _as_owner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PostgresServer(Managed):
    """One PostgreSQL cluster on 127.0.0.1:port, in its own temporary directory.

    ``stop()`` and ``start()`` may be called repeatedly (the cluster survives),
    which is how tests restart it under a running labelsync. ``durable=False``
    turns fsync off: a test cluster is thrown away, and a clean stop still
    writes everything, so restarts lose nothing; the benchmark keeps it on.
    """

    def __init__(self, *, durable: bool = False, startup_timeout: float = 60.0) -> None:
        self.bin = find_bin()
        self.base = Path(tempfile.mkdtemp(prefix="labelsync-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.data_dir = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.durable = durable
        self.startup_timeout = startup_timeout
        self._databases = 0

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, base={str(self.base)!r})"

    # -- lifecycle -------------------------------------------------------------------------
    def _pg(self, *args: str, timeout: float = 120.0) -> None:
        result = subprocess.run(
            [*_as_owner(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",  # the owner may not be allowed into the caller's directory
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self._tail()}"
            )

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._pg(
            str(self.bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-instructions",
        )

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def start(self) -> PostgresServer:
        if self.running:
            return self
        self.init()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            f"-c unix_socket_directories={self.base}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        started = time.monotonic()
        self._pg(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            str(int(self.startup_timeout)),
            "start",
            timeout=self.startup_timeout + 30,
        )
        print(
            f"[postgres] started on 127.0.0.1:{self.port} in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        self._ensure_role()
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: clients are disconnected, everything is written)."""
        if not self.running:
            return
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- administration (over the Unix socket, as the superuser) --------------------------
    def admin(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=str(self.base), port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def _ensure_role(self) -> None:
        from psycopg import sql

        with self.admin() as db:
            if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
                return
            db.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(self.password)
                )
            )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the product's role; returns its name."""
        from psycopg import sql

        self._databases += 1
        name = name or f"labelsync_{os.getpid()}_{self._databases}"
        with self.admin() as db:
            db.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.admin() as db:
            db.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def url(self, dbname: str, *, password: bool = False) -> str:
        """postgresql://labelsync@127.0.0.1:port/dbname, with the password only when asked."""
        secret = f":{self.password}" if password else ""
        return f"postgresql://{ROLE}{secret}@127.0.0.1:{self.port}/{dbname}"


if __name__ == "__main__":
    with PostgresServer() as server:
        name = server.create_database("labelsync")
        print(server.url(name), "password:", server.password, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
