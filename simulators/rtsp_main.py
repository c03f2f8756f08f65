"""``/usr/bin/python3 -m simulators.rtsp_main``: the camera simulator process.

Serves ``--cameras N`` simulated cameras (``cam-001`` … or the names given with
``--name``) and prints one JSON line when it listens::

    {"event": "ready", "host": "127.0.0.1", "port": 8554, "t0": 1795420800.1,
     "cameras": {"cam-001": "rtsp://127.0.0.1:8554/cam-001", ...}}

then reads commands on stdin (see :mod:`simulators.rtsp_control`) and answers on stdout.
It stops on end of stdin (so it dies with whoever started it), SIGINT or SIGTERM.

It runs under Debian's Python, the one with GStreamer's bindings (``gi``), with the
repository on ``PYTHONPATH``. Everything else it imports (numpy, and OpenCV or shapely for
the scenes of :mod:`simulators.scenes`) comes from gridwatch's venv, named with
``--site-packages`` (default: the repository's ``.venv``): both interpreters are CPython
3.11, so the venv's wheels load in either (checked: ``--site-python`` must match).

``--scene module:callable`` chooses what the cameras show: the callable is called as
``callable(name, width, height, index)`` and returns an object with ``frame(t)`` (and
optionally ``online(t)``: while it is False the camera is dropped, as a ``refuse`` outage).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import site
import sys
import threading
from pathlib import Path
from typing import Any

from simulators.rtsp_control import (
    DEFAULT_PORT,
    Command,
    ControlError,
    DropMode,
    OutagePlan,
    mount_name,
)

EXIT_NO_GSTREAMER = 3
DEFAULT_SCENE = "simulators.rtsp_pattern:moving_box"


def use_site_packages(path: str, python: str | None) -> None:
    """Put the venv's packages ahead of Debian's (its numpy, not Debian's older one)."""
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python and python != mine:
        raise SystemExit(
            f"rtsp-sim: {path} holds packages for Python {python}, this is Python {mine}; "
            "make the venv with a Python of the same minor version as /usr/bin/python3"
        )
    before = list(sys.path)
    site.addsitedir(path)  # also runs its .pth files (the editable install of gridwatch)
    added = [p for p in sys.path if p not in before]
    system = next((i for i, p in enumerate(before) if p.endswith("-packages")), len(before))
    sys.path[:] = before[:system] + added + before[system:]


def _repo_venv() -> str | None:
    """The repository's .venv for this Python, when started by hand without --site-packages."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = Path(__file__).resolve().parents[1] / ".venv" / "lib" / version / "site-packages"
    return str(path) if path.is_dir() else None


def load_scene(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--scene must be module:callable, got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise SystemExit(f"--scene {spec!r} is not callable")
    return factory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rtsp_main", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--cameras", type=int, default=2, help="cameras cam-001 … cam-NNN")
    p.add_argument("--name", action="append", default=[], help="camera names (repeatable)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=1024, help="kbit/s per camera")
    p.add_argument("--threads", type=int, default=64, help="RTSP server thread pool")
    p.add_argument("--scene", default=DEFAULT_SCENE, help="module:callable making each scene")
    p.add_argument("--site-packages", default=None, help="the venv's site-packages")
    p.add_argument("--site-python", default=None, help="its Python version, e.g. 3.11")
    p.add_argument(
        "--outage", action="append", default=[], help="NAME@START+DURATION[/EVERY][:MODE]"
    )
    return p.parse_args(argv)


class _Output:
    """One JSON object a line on stdout, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False)
        with self._lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass  # whoever started us is gone; end of stdin stops us next


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    site_packages = args.site_packages or _repo_venv()
    if site_packages:
        use_site_packages(site_packages, args.site_python)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="rtsp-sim %(levelname)s %(message)s"
    )
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
    except (ImportError, ValueError) as exc:
        print(
            f"rtsp-sim: GStreamer's RTSP server bindings are missing under {sys.executable}"
            f" ({exc}); run scripts/video-deps",
            file=sys.stderr,
        )
        return EXIT_NO_GSTREAMER
    from simulators.rtsp_server import CameraServer, CameraSpec, GLib, Gst

    Gst.init(None)
    missing = [
        e
        for e in ("appsrc", "videoconvert", "x264enc", "rtph264pay")
        if Gst.ElementFactory.find(e) is None
    ]
    if missing:
        print(
            f"rtsp-sim: GStreamer elements missing: {missing}; run scripts/video-deps",
            file=sys.stderr,
        )
        return EXIT_NO_GSTREAMER

    names = args.name or [mount_name(i) for i in range(1, args.cameras + 1)]
    plans = [OutagePlan.parse(text) for text in args.outage]
    unknown = [p.camera for p in plans if p.camera not in names]
    if unknown:
        raise SystemExit(f"--outage names unknown cameras {unknown}; serving {names}")
    scene = load_scene(args.scene)
    cameras = [
        (
            CameraSpec(name, args.width, args.height, args.fps, args.bitrate),
            scene(name, args.width, args.height, index),
        )
        for index, name in enumerate(names)
    ]
    out = _Output()
    server = CameraServer(
        cameras, host=args.host, port=args.port, threads=args.threads, on_event=out
    )
    loop = GLib.MainLoop()
    try:
        port = server.start()
    except OSError as exc:
        print(f"rtsp-sim: {exc}", file=sys.stderr)
        return 1

    def handle(line: str) -> bool:
        try:
            command = Command.from_json(json.loads(line))
        except (ValueError, ControlError) as exc:
            out({"reply": None, "ok": False, "error": str(exc)})
            return False
        try:
            if command.op == "drop":
                assert command.camera is not None
                server.drop(command.camera, command.seconds, command.mode)
            elif command.op == "restore":
                assert command.camera is not None
                server.restore(command.camera)
            out({"reply": command.id, "ok": True, "status": [s.to_json() for s in server.status()]})
        except ControlError as exc:
            out({"reply": command.id, "ok": False, "error": str(exc)})
        return False  # idle callbacks run once

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                GLib.idle_add(handle, line)
        GLib.idle_add(loop.quit)

    def plan_outage(plan: OutagePlan) -> None:
        def fire() -> bool:
            server.drop(plan.camera, plan.duration_s, plan.mode)
            if plan.every_s is not None:
                GLib.timeout_add(int(plan.every_s * 1000), fire)
            return False

        GLib.timeout_add(int(plan.start_s * 1000), fire)

    for plan in plans:
        plan_outage(plan)
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    out(
        {
            "event": "ready",
            "host": args.host,
            "port": port,
            "t0": server.t0,
            "cameras": server.urls(),
            "modes": [m.value for m in DropMode],
        }
    )
    try:
        loop.run()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
