"""`gridwatch run` as a separate process, the way an operator (or a crash) meets it: started,
stopped with SIGTERM, or killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

GRIDWATCH = str(Path(sys.executable).with_name("gridwatch"))


class GridwatchProcess:
    """One `gridwatch run` with the given environment; its log is kept in :attr:`lines`."""

    def __init__(self, env: dict[str, str], http_port: int, args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.http_port = http_port
        self.args = args  # global options, e.g. ("--config", path)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._drain: threading.Thread | None = None

    def start(self, within: float = 90.0) -> None:
        proc = subprocess.Popen(
            [GRIDWATCH, *self.args, "run"], env=self.env, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stderr is not None
        self.proc = proc
        ready = threading.Event()

        def drain() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.lines.append(line)
                if "gridwatch is running" in line:
                    ready.set()
            ready.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not ready.wait(within) or proc.poll() is not None:
            self.stop()
            raise AssertionError("gridwatch run did not start:\n" + "".join(self.lines[-40:]))

    def _finish(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(60)
        if self._drain is not None:
            self._drain.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        return code

    def stop(self) -> int:
        """SIGTERM and wait: gridwatch stores and acknowledges what it took, then exits."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._finish()

    def kill(self) -> int:
        """SIGKILL: no chance to finish anything (a crash, the OOM killer, a power cut)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        return self._finish()

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())

    def wait_health(self, predicate: Any, within: float = 30.0) -> dict[str, Any]:
        """Ask the other process until its health report satisfies ``predicate``."""
        deadline = time.monotonic() + within
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                report = self.health()
                if predicate(report):
                    return report
            time.sleep(0.05)  # polling another process, bounded by the deadline
        raise AssertionError(f"not reached within {within} s: {report}")


def poll(predicate: Any, within: float, what: str) -> None:
    """Check ``predicate`` (state in another process) until it holds, or fail after
    ``within`` seconds naming ``what``."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.1)  # polling another process, bounded by the deadline


@contextlib.contextmanager
def started(env: dict[str, str], http_port: int) -> Iterator[GridwatchProcess]:
    process = GridwatchProcess(env, http_port)
    process.start()
    try:
        yield process
    finally:
        process.stop()
