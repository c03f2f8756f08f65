"""A mosquitto broker run as a child process, for development and tests.

The configuration is regenerated on every start from the constructor's arguments, so the
file on disk never drifts from what the code says; `extra_conf` is the escape hatch.

Settings that differ from mosquitto's defaults, and why:

- `max_queued_messages` (default here 1,000,000; mosquitto's is 1000) with
  `max_queued_bytes 0`: gridwatch's subscriber holds a persistent session so devices'
  alarms wait in the broker while gridwatch restarts; 1000 is a few seconds of a busy grid.
- `max_inflight_messages 65535` (mosquitto's default is 20). Measured on 2.0.11: the value
  is (a) announced to MQTT 5 clients as the broker's Receive Maximum in CONNACK, which caps
  how many unacknowledged QoS 1/2 PUBLISHes a well-behaved publisher may have towards the
  broker, and (b) the broker's send window towards each subscriber *unless* an MQTT 5
  subscriber sends its own Receive Maximum in CONNECT, which then replaces it in both
  directions (a client asking 5000 gets 5000 even with a broker value of 20; a client asking
  100 gets 100). paho does not send Receive Maximum unless told to, so with the default 20 a
  subscriber that acknowledges in batches of thousands (`manual_ack`) stalls after 20
  messages. 65535 is the MQTT 5 maximum and the value the spec implies when a client sends
  none, and unlike 0 ("no maximum") it still bounds MQTT 3.1.1 clients.
- `set_tcp_nodelay true`: with Nagle on, a message that closely follows another on the same
  connection waited ~40 ms; with it off, 1–4 ms.

Started as root, mosquitto reads its config as root and then drops to the `mosquitto` user
(`user mosquitto`): the log, the persistence directory and (later) the password and ACL
files must be usable by that user, so the state directory is prepared by
`gridwatch.embedded.privileges` and owned by it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from gridwatch.embedded.binaries import find_mosquitto
from gridwatch.embedded.errors import (
    EmbeddedServiceError,
    PortInUse,
    PrivilegeError,
    ServiceStartError,
)
from gridwatch.embedded.logtail import tail
from gridwatch.embedded.privileges import (
    ServiceUser,
    can_read,
    chown_to,
    group_name,
    lookup_service_user,
    prepare_state_dir,
    running_as_root,
)

__all__ = ["MAX_INFLIGHT_MESSAGES", "MosquittoBroker"]

log = logging.getLogger(__name__)

#: See the module docstring: high enough never to cap a batch-acknowledging subscriber.
MAX_INFLIGHT_MESSAGES = 65535

SERVICE_USER = "mosquitto"
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 0.5
_LOG_TAIL_LINES = 30

# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keepalive 5 s, empty client
# id (the broker assigns one). Any CONNACK, even "not authorised", proves the broker is up
# and speaking MQTT, which a bare TCP connect does not.
_CONNECT_PACKET = bytes([0x10, 12, 0x00, 0x04, *b"MQTT", 0x04, 0x02, 0x00, 0x05, 0x00, 0x00])
_DISCONNECT_PACKET = bytes([0xE0, 0x00])


class MosquittoBroker:
    """A mosquitto process listening on `host:port`, with its state under `state_dir`.

    `state_dir` is `<data dir>/mosquitto` (or any directory dedicated to this broker); it
    holds the generated config, the log and the persistence database. Construction does no
    I/O; `start()` does all of it.
    """

    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        persistence: bool = True,
        max_queued_messages: int = 1_000_000,
        max_packet_size: int = 262144,
        extra_conf: str = "",
        password_file: Path | None = None,
        acl_file: Path | None = None,
        autosave_interval: int = 60,
    ) -> None:
        if not 0 < port < 65536:
            # mosquitto reads port 0 as "unix socket listener", not "any free port".
            raise ValueError(f"port must be 1..65535, not {port}")
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.max_packet_size = max_packet_size
        self.extra_conf = extra_conf
        self.password_file = password_file
        self.acl_file = acl_file
        self.autosave_interval = autosave_interval
        self._real_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def url(self) -> str:
        """`mqtt://host:port`, the form gridwatch's config takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process started by this object is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    @property
    def real_state_dir(self) -> Path:
        """Where the state really is (differs from `state_dir` when relocated); after start."""
        if self._real_dir is None:
            raise EmbeddedServiceError("the broker has not been started")
        return self._real_dir

    @property
    def log_path(self) -> Path:
        """The broker's log file (its own log and its stdout/stderr)."""
        return self.real_state_dir / "mosquitto.log"

    @property
    def conf_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self.real_state_dir / "mosquitto.conf"

    @property
    def pid_path(self) -> Path:
        """The running broker's pid, for a command that asks it to reload (SIGHUP) its
        password and ACL files; removed when it stops."""
        return self.real_state_dir / "mosquitto.pid"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start mosquitto and return once it answers an MQTT CONNECT.

        Raises PortInUse if another process holds the port, ServiceStartError (with the
        tail of the log) if mosquitto exits or does not answer within `timeout` seconds.
        """
        if self.running:
            raise EmbeddedServiceError(f"broker already running (pid {self.pid})")
        binary = find_mosquitto()
        user = lookup_service_user(SERVICE_USER, package="mosquitto") if running_as_root() else None
        self._real_dir = prepare_state_dir(self.state_dir, user)
        self._check_auth_files(user)
        self._stop_leftover()
        _check_port_free(self.host, self.port)

        self.conf_path.write_text(self._render_conf(as_root=user is not None))
        self.conf_path.chmod(0o644)
        self.log_path.touch(mode=0o640)
        chown_to(self.log_path, user)
        # O_APPEND: mosquitto appends to the same file; its stderr (config errors come
        # before its log opens) lands there too, so one file tells the whole story.
        self._log_handle = self.log_path.open("ab")
        log_offset = self._log_handle.tell()
        try:
            self._process = subprocess.Popen(
                [str(binary), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                cwd=self._real_dir,
                # its own session: a Ctrl-C in the terminal reaches gridwatch only, which then
                # stops the broker after its last acknowledgements and its offline status
                start_new_session=True,
            )
            self.pid_path.write_text(f"{self._process.pid}\n")
            self._wait_ready(timeout, log_offset)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stop the broker: SIGTERM (it saves persistence), SIGKILL after `grace` seconds."""
        process, self._process = self._process, None
        if self._real_dir is not None:
            self.pid_path.unlink(missing_ok=True)
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = _LOG_TAIL_LINES, *, since: int = 0) -> str:
        """The last `lines` lines of the log written after byte offset `since`."""
        return tail(self.log_path, lines, since)

    # -- internals ---------------------------------------------------------------------

    def _stop_leftover(self, grace: float = 10.0) -> None:
        """Stop a broker left running on this state dir by a gridwatch that was killed
        (SIGKILL gives it no chance to stop its children, which run in their own session):
        it holds the port, and its persistence is ours. SIGTERM, so that it saves it."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError):
            return
        if str(self.conf_path).encode() not in cmdline:
            return  # the pid belongs to another process by now
        log.warning("stopping a mosquitto left running by an earlier gridwatch (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(_POLL_INTERVAL)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def _check_auth_files(self, user: ServiceUser | None) -> None:
        # mosquitto 2 reads these after dropping to its user: an unreadable file would only
        # show up as a start failure in its log, so say what to fix up front.
        for option, path in (("password_file", self.password_file), ("acl_file", self.acl_file)):
            if path is None:
                continue
            if not path.is_file():
                raise ServiceStartError(f"{option} {path} does not exist")
            if user is not None and not can_read(path, user):
                raise PrivilegeError(
                    f"{option} {path} is not readable by user {user.name!r}, which mosquitto "
                    f"runs as; e.g. chown root:{group_name(user.gid)} {path} && "
                    f"chmod 0640 {path} (and make its parent directories searchable)"
                )

    def _render_conf(self, *, as_root: bool) -> str:
        state = self.real_state_dir
        for path in (state, self.password_file, self.acl_file):
            if path is not None and "\n" in str(path):
                raise ValueError(f"path with a newline cannot go in mosquitto.conf: {path!r}")
        lines = [
            "# Generated by gridwatch.embedded.mosquitto on every start: edits are lost.",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
        ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file.resolve()}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file.resolve()}")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {state}",
                "persistence_file mosquitto.db",
                f"autosave_interval {self.autosave_interval}",
            ]
        else:
            lines.append("persistence false")
        lines += [
            "set_tcp_nodelay true",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"max_packet_size {self.max_packet_size}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if as_root:
            lines.append(f"user {SERVICE_USER}")
        if self.extra_conf:
            lines += ["# extra_conf", self.extra_conf.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            status = self._process.poll()
            if status is not None:
                last_lines = self.log_tail(since=log_offset)
                if "Address already in use" in last_lines:
                    raise PortInUse(
                        f"mosquitto could not listen on {self.host}:{self.port}: address "
                        f"already in use\n--- {self.log_path} ---\n{last_lines}"
                    )
                raise ServiceStartError(
                    f"mosquitto exited with status {status} during start-up"
                    f"\n--- {self.log_path} ---\n{last_lines}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceStartError(
                    f"mosquitto did not answer an MQTT CONNECT on {self.host}:{self.port} "
                    f"within {timeout:.1f} s\n--- {self.log_path} ---\n"
                    f"{self.log_tail(since=log_offset)}"
                )
            if _mqtt_handshake(self.host, self.port, min(_PROBE_TIMEOUT, remaining)):
                return
            # Waiting on the process doubles as the pause between probes and notices an
            # early exit at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(min(_POLL_INTERVAL, max(remaining, 0.001)))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _check_port_free(host: str, port: int) -> None:
    """Fail fast if another process listens on host:port.

    Binding with SO_REUSEADDR, as mosquitto does, succeeds over TIME_WAIT leftovers of a
    previous broker but fails on any listening socket, including one on 0.0.0.0 or [::].
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServiceStartError(f"cannot resolve broker host {host!r}: {exc}") from exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"port {port} on {host} is already in use by another process; "
                        f"choose another port or stop it (`ss -ltnp 'sport = :{port}'` "
                        "shows which)"
                    ) from exc
                raise ServiceStartError(f"cannot bind {host}:{port}: {exc}") from exc


def _mqtt_handshake(host: str, port: int, timeout: float) -> bool:
    """True if host:port answers an MQTT CONNECT with a CONNACK within `timeout`."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(_CONNECT_PACKET)
            reply = b""
            while len(reply) < 4:
                chunk = conn.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            with contextlib.suppress(OSError):
                conn.sendall(_DISCONNECT_PACKET)
            return reply[0] == 0x20
    except OSError:  # refused, reset, timed out: not ready yet
        return False
