"""A private PostgreSQL cluster for development and tests, from the distribution's binaries.

Layout under the state dir (`<data dir>/postgres`, owned by the `postgres` user when we
run as root — see `gridwatch.embedded.privileges`):

    data/             PGDATA, created by initdb on first start
    data/gridwatch.conf   our settings, rewritten on every start, included from postgresql.conf
    postgres.log      the server's log (pg_ctl -l)
    initdb.log        initdb's output, kept for a person reading a failed first start
    .s.PGSQL.<port>   the unix socket (unless the path would be too long)

The cluster listens on a unix socket only (`listen_addresses = ''`), so `port` only names
the socket file: two clusters with the same port but different socket directories do not
clash, and no TCP port is ever exposed. Authentication is `trust` on that socket and
`reject` for TCP; trust is acceptable because the socket's directory is private to the
service user (0700), so only that user and root can connect at all.

Collation is `C` (ctype `C.UTF-8` when the system has it): byte order is what we want for
identifiers and never changes with a glibc upgrade, which would otherwise make PostgreSQL
warn about collation version mismatches and ask for reindexing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from gridwatch.embedded.binaries import find_postgres_bin_dir
from gridwatch.embedded.errors import EmbeddedServiceError, ServiceStartError
from gridwatch.embedded.logtail import tail
from gridwatch.embedded.pgdata import (
    PidFile,
    cluster_version,
    process_alive,
    read_pidfile,
    running_server,
)
from gridwatch.embedded.privileges import (
    ServiceUser,
    chown_to,
    lookup_service_user,
    prepare_state_dir,
    run_as_prefix,
    running_as_root,
    socket_dir_for,
)

__all__ = ["PostgresCluster", "StartTimings"]

log = logging.getLogger(__name__)

SERVICE_USER = "postgres"
#: The bootstrap superuser initdb creates; we connect as it to create roles and databases.
SUPERUSER = "postgres"
_INCLUDE_LINE = "include_if_exists = 'gridwatch.conf'"
_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 30


@dataclass(frozen=True, slots=True)
class StartTimings:
    """Seconds spent in the phases of the last `start()` (initdb is None when reused)."""

    initdb: float | None
    server_start: float
    setup: float

    @property
    def total(self) -> float:
        return (self.initdb or 0.0) + self.server_start + self.setup


@dataclass(frozen=True, slots=True)
class _Located:
    real_dir: Path
    user: ServiceUser | None
    bin_dir: Path
    prefix: list[str]


class PostgresCluster:
    """A PostgreSQL cluster whose state lives under `state_dir`, reachable by unix socket.

    Construction does no I/O. `start()` runs initdb on first use, starts the server (or
    attaches to one already running on this data directory) and makes sure role `user`
    (a superuser: it is our private cluster) and database `database` exist.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 5432,
        database: str = "gridwatch",
        user: str = "gridwatch",
        shared_buffers: str = "128MB",
        max_connections: int = 100,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, not {port}")
        self.state_dir = Path(state_dir)
        self.port = port
        self.database = database
        self.user = user
        self.shared_buffers = shared_buffers
        self.max_connections = max_connections
        self.timings: StartTimings | None = None
        self.attached = False
        self._located: _Located | None = None
        self._socket_dir: Path | None = None
        self._started_pid: int | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def real_state_dir(self) -> Path:
        """Where the state really is (differs from `state_dir` when relocated); after start."""
        return self._require_located().real_dir

    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        return self.real_state_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.real_state_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the unix socket; known after start."""
        if self._socket_dir is None:
            raise EmbeddedServiceError("the cluster has not been started")
        return self._socket_dir

    @property
    def conninfo(self) -> str:
        """libpq keyword string for `database` as `user`, e.g. for `psycopg.connect`."""
        return self.conninfo_for(self.database)

    @property
    def running(self) -> bool:
        """True if a server is running on this cluster's data directory."""
        if self._located is None:
            return False
        return running_server(self.data_dir) is not None

    def conninfo_for(self, database: str, *, user: str | None = None) -> str:
        """libpq keyword string for another database of this cluster."""
        return make_conninfo(
            host=str(self.socket_dir),
            port=str(self.port),
            dbname=database,
            user=user or self.user,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Initialise on first use, start (or attach), create role and database."""
        deadline = time.monotonic() + timeout
        located = self._locate()
        data_dir = located.real_dir / "data"
        self._socket_dir = socket_dir_for(located.real_dir, f".s.PGSQL.{self.port}", located.user)

        pidfile = running_server(data_dir)
        initdb_s: float | None = None
        started = time.monotonic()
        if pidfile is not None:
            self._check_attachable(pidfile)
            self._wait_pidfile_ready(deadline)
            # start() twice on the object that started the server is not an attach.
            self.attached = pidfile.pid != self._started_pid
        else:
            if cluster_version(data_dir) is None:
                initdb_s = self._initdb(located, data_dir, deadline)
            started = time.monotonic()
            self._write_config(located, data_dir)
            self._pg_ctl_start(located, data_dir, deadline)
            started_by_us = read_pidfile(data_dir)
            self._started_pid = started_by_us.pid if started_by_us else None
            self.attached = False
        server_s = time.monotonic() - started

        setup_started = time.monotonic()
        self._ensure_role_and_database(deadline)
        self.timings = StartTimings(initdb_s, server_s, time.monotonic() - setup_started)
        log.info(
            "postgres %s at %s: initdb %s, start %.3f s, setup %.3f s",
            "attached" if self.attached else "started",
            self._socket_dir,
            "skipped" if initdb_s is None else f"{initdb_s:.3f} s",
            server_s,
            self.timings.setup,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server with `pg_ctl stop -m fast` (rolls back open transactions).

        Stops it even if this object only attached to it: calling stop() says so.
        """
        real_dir = self.state_dir.resolve()
        if running_server(real_dir / "data") is None:
            return
        located = self._locate()
        result = self._run(
            located,
            [
                str(located.bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(located.real_dir / "data"),
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, math.ceil(timeout))),
                "-s",
            ],
            timeout=timeout + 5,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(
                f"pg_ctl stop failed ({result.returncode}): {result.stdout.strip()}"
                f"\n--- {self.log_path} ---\n{self._log_tail()}"
            )
        self.attached = False
        self._started_pid = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Undo what __enter__ did: a server we only attached to belongs to someone else.
        if not self.attached:
            self.stop()

    # -- databases ---------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` owned by `user`, optionally cloned from `template`.

        Returns its conninfo. Cloning is how tests get a migrated database per module in
        milliseconds; PostgreSQL refuses to clone a template that has open connections, so
        close them first.
        """
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(self.user)
        )
        if template is not None:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin_connection() as conn:
            try:
                conn.execute(query)
            except psycopg.errors.ObjectInUse as exc:
                raise EmbeddedServiceError(
                    f"cannot clone {template!r}: it has open connections; close them first ({exc})"
                ) from exc
        return self.conninfo_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        with self._admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- internals ---------------------------------------------------------------------

    def _require_located(self) -> _Located:
        if self._located is None:
            raise EmbeddedServiceError("the cluster has not been started")
        return self._located

    def _locate(self) -> _Located:
        if self._located is None:
            user = (
                lookup_service_user(SERVICE_USER, package="postgresql")
                if running_as_root()
                else None
            )
            real_dir = prepare_state_dir(self.state_dir, user)
            # An existing cluster can only be run by the major version that created it.
            version = cluster_version(real_dir / "data")
            bin_dir = find_postgres_bin_dir(version=version)
            prefix = run_as_prefix(user) if user is not None else []
            self._located = _Located(real_dir, user, bin_dir, prefix)
        return self._located

    def _run(
        self, located: _Located, argv: Sequence[str], *, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        # cwd inside the state dir: as the postgres user, initdb and pg_ctl otherwise warn
        # "could not change directory to /root" when started from a private directory.
        return subprocess.run(
            [*located.prefix, *argv],
            cwd=located.real_dir,
            env=_server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            # its own session: a Ctrl-C in the terminal must not fast-shut the database
            # down under gridwatch, which stops it last
            start_new_session=True,
        )

    def _initdb(self, located: _Located, data_dir: Path, deadline: float) -> float:
        if data_dir.exists() and any(data_dir.iterdir()):
            raise EmbeddedServiceError(
                f"{data_dir} is not empty but holds no cluster (no PG_VERSION): an "
                "interrupted initdb? Remove it to start from an empty cluster"
            )
        ctype = _utf8_c_locale()
        argv = [
            str(located.bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=reject",
            "-E",
            "UTF8",
            f"--locale={ctype}",
            "--lc-collate=C",
        ]
        began = time.monotonic()
        try:
            result = self._run(located, argv, timeout=max(1.0, deadline - began))
        except subprocess.TimeoutExpired as exc:
            # initdb cleans up after its own failures, not after being killed; a half-made
            # PGDATA would block every later start.
            shutil.rmtree(data_dir, ignore_errors=True)
            raise ServiceStartError(
                f"initdb did not finish within the start timeout: {exc}"
            ) from exc
        elapsed = time.monotonic() - began
        initdb_log = located.real_dir / "initdb.log"
        initdb_log.write_text(result.stdout)
        if result.returncode != 0:
            raise ServiceStartError(
                f"initdb failed ({result.returncode}); output in {initdb_log}:\n"
                + _last_lines(result.stdout, _LOG_TAIL_LINES)
            )
        return elapsed

    def _write_config(self, located: _Located, data_dir: Path) -> None:
        settings = {
            "listen_addresses": "",
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "fsync": "on",
            "shared_buffers": self.shared_buffers,
            "max_connections": self.max_connections,
        }
        lines = ["# Generated by gridwatch.embedded.postgres on every start: edits are lost."]
        lines += [f"{key} = {_conf_value(value)}" for key, value in settings.items()]
        ours = data_dir / "gridwatch.conf"
        ours.write_text("\n".join(lines) + "\n")
        ours.chmod(0o600)
        chown_to(ours, located.user)

        main_conf = data_dir / "postgresql.conf"
        if _INCLUDE_LINE not in main_conf.read_text():
            # Appended last so our values win over initdb's; ALTER SYSTEM still wins over
            # both, as a person would expect.
            with main_conf.open("a") as handle:
                handle.write(f"\n# gridwatch settings\n{_INCLUDE_LINE}\n")

    def _pg_ctl_start(self, located: _Located, data_dir: Path, deadline: float) -> None:
        seconds = max(1, math.ceil(deadline - time.monotonic()))
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [
            str(located.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(seconds),
            "-s",
        ]
        result = self._run(located, argv, timeout=seconds + 5)
        if result.returncode != 0:
            raise ServiceStartError(
                f"pg_ctl start failed ({result.returncode}): {result.stdout.strip()}"
                f"\n--- {self.log_path} ---\n{self._log_tail(since=log_offset)}"
            )

    def _check_attachable(self, pidfile: PidFile) -> None:
        if pidfile.port != self.port or pidfile.socket_dir != self.socket_dir:
            raise EmbeddedServiceError(
                f"a server (pid {pidfile.pid}) already runs on {self.data_dir} with port "
                f"{pidfile.port} and socket dir {pidfile.socket_dir}, not port {self.port} "
                f"and {self.socket_dir}; stop it first or use its settings"
            )

    def _wait_pidfile_ready(self, deadline: float) -> None:
        # A server someone else is starting: its pid file says "ready" once it accepts
        # connections (the same signal `pg_ctl start -w` waits for).
        while True:
            pidfile = read_pidfile(self.data_dir)
            if pidfile is None or not process_alive(pidfile.pid):
                raise ServiceStartError(
                    f"the running server went away while attaching\n--- {self.log_path} ---"
                    f"\n{self._log_tail()}"
                )
            if pidfile.status in {"ready", "standby"}:
                return
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    f"server pid {pidfile.pid} still {pidfile.status!r} at the deadline"
                )
            time.sleep(_POLL_INTERVAL)

    @contextlib.contextmanager
    def _admin_connection(
        self, *, connect_timeout: float = 10.0
    ) -> Iterator[psycopg.Connection[TupleRow]]:
        conninfo = self.conninfo_for("postgres", user=SUPERUSER)
        with psycopg.connect(
            conninfo, autocommit=True, connect_timeout=max(1, math.ceil(connect_timeout))
        ) as conn:
            yield conn

    def _ensure_role_and_database(self, deadline: float) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        with self._admin_connection(connect_timeout=remaining) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", [self.user]
            ).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(self.user))
                    )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(self.database), sql.Identifier(self.user)
                        )
                    )

    def _log_tail(self, since: int = 0) -> str:
        if self._located is None:
            return "(no log file)"
        return tail(self.log_path, _LOG_TAIL_LINES, since)


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.splitlines()[-count:])


def _conf_value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _server_environment() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST...) would steer initdb, pg_ctl and
    # the server away from what we configured.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _utf8_c_locale() -> str:
    try:
        listing = subprocess.run(
            ["locale", "-a"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "C"
    names = {line.strip().lower().replace("-", "") for line in listing.splitlines()}
    return "C.UTF-8" if "c.utf8" in names else "C"
