"""Start and drive the camera simulator from gridwatch's own Python (the venv).

GStreamer's Python bindings come from Debian (``python3-gi``) and import under
``/usr/bin/python3`` only, so the simulator is a child process of that interpreter with the
repository on ``PYTHONPATH``: ``/usr/bin/python3 -m simulators.rtsp_main``. This handle
starts it, waits for it to listen, sends it commands and stops it; it is what the tests,
``gridwatch simulate cameras`` and the demo use. ``GRIDWATCH_GST_PYTHON`` names another
interpreter with ``gi`` when there is one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from simulators.rtsp_control import CameraSimStatus, Command, DropMode, OutagePlan

GST_PYTHON_ENV = "GRIDWATCH_GST_PYTHON"
DEFAULT_GST_PYTHON = "/usr/bin/python3"
REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_NO_GSTREAMER = 3  # as simulators.rtsp_main

Event = dict[str, Any]


class SimulatorError(RuntimeError):
    """The simulator did not start, died, or refused a command."""


def gst_python() -> str:
    return os.environ.get(GST_PYTHON_ENV) or DEFAULT_GST_PYTHON


class RtspSimulator:
    """A simulator process serving ``cameras`` cameras (``cam-001`` …) or the ``names`` given.

    ``port=0`` picks a free port (tests); the demo uses 8554, where the simulated county's
    ``rtsp_url`` points.
    """

    def __init__(
        self,
        *,
        cameras: int = 2,
        names: Sequence[str] = (),
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        bitrate_kbps: int = 1024,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 64,
        scene: str | None = None,
        outages: Sequence[OutagePlan] = (),
        python: str | None = None,
    ) -> None:
        self.args = [
            "--host",
            host,
            "--port",
            str(port),
            "--cameras",
            str(cameras),
            "--width",
            str(width),
            "--height",
            str(height),
            "--fps",
            str(fps),
            "--bitrate",
            str(bitrate_kbps),
            "--threads",
            str(threads),
        ]
        for name in names:
            self.args += ["--name", name]
        if scene:
            self.args += ["--scene", scene]
        for plan in outages:
            self.args += ["--outage", str(plan)]
        # The venv's packages (numpy, OpenCV for the scenes) serve the simulator too.
        self.args += [
            "--site-packages",
            sysconfig.get_paths()["purelib"],
            "--site-python",
            f"{sys.version_info.major}.{sys.version_info.minor}",
        ]
        self.python = python or gst_python()
        self.urls: dict[str, str] = {}
        self.port = 0
        self.t0 = 0.0
        self.events: list[Event] = []
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()
        self._replies: dict[int, Event] = {}
        self._next_id = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> RtspSimulator:
        """Start the process and wait until it listens; returns self."""
        if not Path(self.python).exists():
            raise SimulatorError(
                f"{self.python} not found: the camera simulator needs Debian's python3 with "
                "GStreamer bindings (run scripts/video-deps) or GRIDWATCH_GST_PYTHON"
            )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONNOUSERSITE": "1"}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the child; closed in stop)
        self._proc = subprocess.Popen(
            [self.python, "-m", "simulators.rtsp_main", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
        )
        self._reader = threading.Thread(target=self._read, name="rtsp-sim-reader", daemon=True)
        self._reader.start()
        try:
            ready = self.wait_event(lambda e: e.get("event") == "ready", timeout)
        except SimulatorError:
            self.stop()
            raise
        self.urls = dict(ready["cameras"])
        self.port = int(ready["port"])
        self.t0 = float(ready["t0"])
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Close its stdin (it stops on that), kill it if it does not; returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None
        return code

    def __enter__(self) -> RtspSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def url(self, name: str) -> str:
        return self.urls[name]

    # -- control ---------------------------------------------------------------------------

    def drop(
        self,
        camera: str,
        seconds: float | None = None,
        mode: DropMode = DropMode.REFUSE,
        timeout: float = 5.0,
    ) -> list[CameraSimStatus]:
        """Take ``camera`` away, for ``seconds`` or until :meth:`restore`."""
        return self._call(Command(0, "drop", camera, seconds, mode), timeout)

    def restore(self, camera: str, timeout: float = 5.0) -> list[CameraSimStatus]:
        return self._call(Command(0, "restore", camera), timeout)

    def status(self, timeout: float = 5.0) -> list[CameraSimStatus]:
        return self._call(Command(0, "status"), timeout)

    def wait_event(
        self, predicate: Callable[[Event], bool], timeout: float, after: int = 0
    ) -> Event:
        """The first event after the first ``after`` ones (already there or coming) for which
        ``predicate`` holds; ``after=len(sim.events)`` before acting waits for a new one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                if self._closed:
                    raise SimulatorError(f"camera simulator exited{self._why()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimulatorError(f"camera simulator: no such event in {timeout} s")
                self._changed.wait(left)

    def events_after(self, seen: int, timeout: float) -> list[Event]:
        """Events after the first ``seen`` ones, waiting up to ``timeout`` for one; raises
        :class:`SimulatorError` once the process has exited and said all it had."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) <= seen:
                if self._closed:
                    raise SimulatorError(f"camera simulator exited{self._why()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._changed.wait(left)
            return self.events[seen:]

    def _call(self, command: Command, timeout: float) -> list[CameraSimStatus]:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise SimulatorError("camera simulator not running")
        with self._changed:
            self._next_id += 1
            ident = self._next_id
        data = command.to_json() | {"id": ident}
        try:
            proc.stdin.write(json.dumps(data) + "\n")
            proc.stdin.flush()
        except OSError as exc:
            raise SimulatorError(f"camera simulator gone: {exc}{self._why()}") from None
        deadline = time.monotonic() + timeout
        with self._changed:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise SimulatorError(f"camera simulator did not answer {data}{self._why()}")
                self._changed.wait(left)
            reply = self._replies.pop(ident)
        if not reply.get("ok"):
            raise SimulatorError(f"camera simulator refused {data}: {reply.get('error')}")
        return [CameraSimStatus.from_json(s) for s in reply.get("status", [])]

    # -- its stdout ------------------------------------------------------------------------

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing); its stderr has the story
            with self._changed:
                if "reply" in message and message["reply"] is not None:
                    self._replies[int(message["reply"])] = message
                else:
                    self.events.append(message)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _why(self) -> str:
        proc, err = self._proc, self._stderr
        parts = []
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            parts.append(f" with code {code}")
            if code == EXIT_NO_GSTREAMER:
                parts.append(" (GStreamer missing: run scripts/video-deps)")
        if err is not None:
            # A fresh open of the same file: seeking ``err`` would move the child's offset.
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/self/fd/{err.fileno()}", "rb") as again,
            ):
                tail = again.read()[-2000:].decode(errors="replace").strip()
                if tail:
                    parts.append(f"; its stderr:\n{tail}")
        return "".join(parts)
