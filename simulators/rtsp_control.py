"""What the camera simulator and whoever drives it say to each other, and outage plans.

The simulator runs as its own process under Debian's ``/usr/bin/python3`` (which has
GStreamer's bindings); it reads one JSON command a line on stdin and writes one JSON reply
or event a line on stdout. Both sides import this module, so it is standard library only.

Two ways a camera goes away:

- ``refuse``: connected clients are cut off and the mount answers 404 until it is back —
  a camera rebooting or unplugged.
- ``stall``: connections stay open but no frame comes — a hung encoder or a congested
  uplink; only a client with a read timeout notices.

An outage plan, as given on the command line: ``NAME@START+DURATION[/EVERY][:MODE]``, e.g.
``cam-002@30+10`` (drop 30 s after start, for 10 s) or ``cam-001@20+5/60:stall``
(stall for 5 s every 60 s from 20 s on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Mount names follow the simulated county's rtsp_url (rtsp://127.0.0.1:8554/cam-001).
DEFAULT_PORT = 8554


def mount_name(number: int) -> str:
    return f"cam-{number:03d}"


class DropMode(StrEnum):
    REFUSE = "refuse"
    STALL = "stall"


class ControlError(ValueError):
    """A command or an outage plan that cannot be carried out as written."""


@dataclass(frozen=True, slots=True)
class Command:
    """One request to the simulator; ``id`` pairs it with its reply."""

    id: int
    op: str  # "drop" | "restore" | "status"
    camera: str | None = None
    seconds: float | None = None
    mode: DropMode = DropMode.REFUSE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "camera": self.camera,
            "seconds": self.seconds,
            "mode": self.mode.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        try:
            op = str(data["op"])
            ident = int(data["id"])
        except (KeyError, TypeError, ValueError):
            raise ControlError(f"a command needs an integer id and an op: {data!r}") from None
        if op not in ("drop", "restore", "status"):
            raise ControlError(f"unknown op {op!r}")
        seconds = data.get("seconds")
        try:
            mode = DropMode(data.get("mode") or DropMode.REFUSE)
        except ValueError:
            raise ControlError(f"mode must be refuse or stall, got {data.get('mode')!r}") from None
        camera = data.get("camera")
        if op in ("drop", "restore") and not camera:
            raise ControlError(f"{op} needs a camera")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise ControlError(f"seconds must be a positive number, got {seconds!r}")
        return cls(ident, op, camera, None if seconds is None else float(seconds), mode)


@dataclass(frozen=True, slots=True)
class CameraSimStatus:
    """One simulated camera as the simulator sees it."""

    name: str
    url: str
    serving: bool
    stalled: bool
    clients: int
    frames_pushed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "serving": self.serving,
            "stalled": self.stalled,
            "clients": self.clients,
            "frames_pushed": self.frames_pushed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CameraSimStatus:
        return cls(
            str(data["name"]),
            str(data["url"]),
            bool(data["serving"]),
            bool(data["stalled"]),
            int(data["clients"]),
            int(data["frames_pushed"]),
        )


_PLAN = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+)@(?P<start>\d+(?:\.\d+)?)\+(?P<duration>\d+(?:\.\d+)?)"
    r"(?:/(?P<every>\d+(?:\.\d+)?))?(?::(?P<mode>\w+))?$"
)


@dataclass(frozen=True, slots=True)
class OutagePlan:
    """Drop ``camera`` at ``start_s`` for ``duration_s``, again every ``every_s`` if set."""

    camera: str
    start_s: float
    duration_s: float
    every_s: float | None = None
    mode: DropMode = DropMode.REFUSE

    @classmethod
    def parse(cls, text: str) -> OutagePlan:
        match = _PLAN.match(text.strip())
        if match is None:
            raise ControlError(
                f"outage plan {text!r} is not NAME@START+DURATION[/EVERY][:MODE],"
                " e.g. cam-002@30+10 or cam-001@20+5/60:stall"
            )
        try:
            mode = DropMode(match["mode"] or DropMode.REFUSE)
        except ValueError:
            raise ControlError(f"{text!r}: mode must be refuse or stall") from None
        duration = float(match["duration"])
        every = float(match["every"]) if match["every"] else None
        if duration <= 0:
            raise ControlError(f"{text!r}: the duration must be positive")
        if every is not None and every <= duration:
            raise ControlError(f"{text!r}: EVERY must be longer than DURATION")
        return cls(match["name"], float(match["start"]), duration, every, mode)

    def __str__(self) -> str:
        every = f"/{self.every_s:g}" if self.every_s is not None else ""
        return f"{self.camera}@{self.start_s:g}+{self.duration_s:g}{every}:{self.mode.value}"
