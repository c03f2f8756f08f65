"""Synthetic camera scenes: deterministic frames with scripted events and their ground truth.

A :class:`Scene` is built from a :class:`SceneSpec` (a seed, a duration, zones and masks in
0–1 frame coordinates as the registry has them, and a script of events) and renders the
picture at any time ``t`` (seconds since the scene started)::

    scene = Scene(SceneSpec("walk", seed=7, duration=60, zones=(ZONE,),
                            events=(Walk(10, ((0.1, 0.8), (0.6, 0.8))),)))
    img = scene.frame(12.4)          # H×W×3 uint8 BGR, the same for the same t
    scene.online(12.4)               # False while the stream is dropped (serve no frame)
    scene.truth                      # what a detector should find, as time intervals

The same ``t`` always gives the same picture (sensor noise and rain are keyed by time), so the
RTSP simulator, the tests and the benchmark see the same clips. The script:

- people: :class:`Walk` (through waypoints, pausing at some: a pause inside a zone is
  loitering when presence there lasts more than ``dwell_s``);
- nuisances that must raise nothing: :class:`Lights` (a lamp switched on or off),
  :class:`Dusk` (the light fading), :class:`Rain`, :class:`Headlights` (a beam sweeping the
  picture); sensor noise is always there and grows as the light fades;
- camera faults: :class:`Cover` (covered lens), :class:`Freeze` (the same picture, bit for bit),
  :class:`Defocus` (lost focus), :class:`Turn` (the camera turned, and back if ``end``),
  :class:`Drop` (the stream gone: :meth:`Scene.online` is False).

Ground truth (:class:`Truth`): ``zone_intrusion`` (key: zone name ``zone1``, ``zone2``… in
the order of ``zones``, as :mod:`detectors.video.zones` names them) while a person's foot point
is in a zone; ``loitering`` from ``dwell_s`` after the person entered until they left;
``motion`` (key ``frame``) while a person is in view, for a scene without zones;
``camera_fault`` (key: the fault) for each fault event; and the nuisances, for reporting.
A visit whose foot point was well inside the zone (farther than :data:`BORDER` from its
edge) for less than :data:`MIN_REQUIRED_S`, or that overlaps a blinding fault, is not
required (a hit there is neither missed nor false).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, TypeAlias

import cv2
import numpy as np

from devices.registry import FramePolygon
from simulators import scene_render as render

MIN_REQUIRED_S: Final = 1.5
"""A person well inside a zone for less than this is not expected to be detected."""
BORDER: Final = 0.025
"""A foot point this close to a zone's edge (0–1 of the picture) may count either way: a
motion box's bottom is only known to a few pixels."""
PRESENCE_GAP_S: Final = 1.5
"""Presence intervals closer than this are one visit (the detector's clear delay bridges them)."""
OSD_MASK: Final = FramePolygon(((0.0, 0.0), (0.36, 0.0), (0.36, 0.085), (0.0, 0.085)))
"""Where the on-screen clock is drawn; masked in every clip of the set, as in the field."""
EVENT_KINDS: Final = frozenset({"zone_intrusion", "loitering", "motion", "camera_fault"})
BLINDING: Final = frozenset({"covered", "frozen", "unreachable", "moved"})


@dataclass(frozen=True, slots=True)
class Walk:
    """A person walking through ``path`` (foot points, 0–1 of the initial view) at ``speed``
    picture widths a second, pausing ``pauses[i]`` seconds at waypoint ``i`` (not the last:
    there the person is gone, so paths start and end outside the picture)."""

    start: float
    path: tuple[tuple[float, float], ...]
    speed: float = 0.09
    pauses: tuple[float, ...] = ()
    shirt: render.BGR = (40, 60, 160)
    trousers: render.BGR = (50, 40, 35)
    size: float = 1.0


@dataclass(frozen=True, slots=True)
class Lights:
    """The scene's lamp (a street light or floodlight) switched on or off at ``at``."""

    at: float
    on: bool


@dataclass(frozen=True, slots=True)
class Dusk:
    """The ambient light fading linearly to ``to`` × its level between ``start`` and ``end``."""

    start: float
    end: float
    to: float = 0.3


@dataclass(frozen=True, slots=True)
class Rain:
    start: float
    end: float
    density: float = 1.0


@dataclass(frozen=True, slots=True)
class Headlights:
    """A car's beam sweeping across the picture at height ``y`` in ``duration`` seconds."""

    start: float
    duration: float = 3.0
    direction: int = 1
    y: float = 0.7
    strength: float = 1.2


@dataclass(frozen=True, slots=True)
class Cover:
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Freeze:
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Defocus:
    """Focus lost: a blur of ``sigma`` × the picture height."""

    start: float
    end: float
    sigma: float = 0.012


@dataclass(frozen=True, slots=True)
class Turn:
    """The camera panned by ``shift`` picture widths in ``duration`` s; back at ``end``."""

    start: float
    end: float | None = None
    shift: float = 0.2
    duration: float = 1.0


@dataclass(frozen=True, slots=True)
class Drop:
    start: float
    end: float


Event: TypeAlias = Walk | Lights | Dusk | Rain | Headlights | Cover | Freeze | Defocus | Turn | Drop
_FAULTS: Final[dict[type, str]] = {
    Cover: "covered", Freeze: "frozen", Defocus: "blurred", Turn: "moved", Drop: "unreachable",
}


@dataclass(frozen=True, slots=True)
class SceneSpec:
    name: str
    seed: int
    duration: float
    events: tuple[Event, ...] = ()
    zones: tuple[FramePolygon, ...] = ()
    masks: tuple[FramePolygon, ...] = (OSD_MASK,)
    width: int = 640
    height: int = 360
    brightness: float = 1.0
    lamp: tuple[float, float] = (0.62, 0.55)
    lamp_on: bool = False
    noise: float = 2.5
    dwell_s: float = 20.0
    epoch: float = 1795420800.0  # the OSD clock at t = 0
    loop: bool = False  # the script repeats every ``duration`` (the truth is for one turn)


@dataclass(frozen=True, slots=True)
class Truth:
    """An interval in which a detector should report (``kind`` in :data:`EVENT_KINDS`), or a
    nuisance (``lights``, ``dusk``, ``rain``, ``headlights``) that it should not."""

    kind: str
    key: str
    start: float
    end: float
    required: bool = True

    @property
    def is_event(self) -> bool:
        return self.kind in EVENT_KINDS


class Scene:
    """A rendered scene: pure functions of ``t`` over precomputed layers (no I/O)."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.width, self.height = spec.width, spec.height
        self.duration = spec.duration
        self.zones = spec.zones
        self.masks = spec.masks
        self._albedo, self._horizon = render.background(spec.seed, spec.width, spec.height)
        pw = render.panorama_width(spec.width)
        lamp_px = ((spec.lamp[0] + render.PAN_MARGIN) * spec.width, spec.lamp[1] * spec.height)
        self._lamp = render.pool((spec.height, pw), lamp_px, (0.3 * spec.width, 0.35 * spec.height))
        self._walks = [render.Stroll(w) for w in spec.events if isinstance(w, Walk)]
        self.truth = self._truth()

    # -- what a camera shows

    def online(self, t: float) -> bool:
        """False while the stream is dropped: serve no frame."""
        t = self._looped(t)
        return not any(isinstance(e, Drop) and e.start <= t < e.end for e in self.spec.events)

    def times(self, fps: float) -> Iterator[float]:
        n = int(self.duration * fps)
        return (i / fps for i in range(n))

    def frame(self, t: float) -> np.ndarray:
        """The picture at ``t`` (H×W×3 uint8 BGR)."""
        spec, h, w = self.spec, self.height, self.width
        clock_t = t
        t = self._frozen_at(self._looped(t))
        offset = round((render.PAN_MARGIN + self.pan(t)) * w)
        img = self._albedo[:, offset:offset + w].copy()
        for path in self._walks:
            pos = path.at(t)
            if pos is not None:
                (x, y), phase = pos
                x -= self.pan(t)
                walk = path.walk
                tall = render.person_height(y, self._horizon, h, walk.size)
                render.draw_person(img, (x * w, y * h), tall, phase, walk.shirt, walk.trousers)
        ambient = self._ambient(t)
        light = self._light_field(t, offset)
        out: np.ndarray = img.astype(np.float32)
        out *= light[..., None] if light is not None else np.float32(ambient)
        key = round(t * 25) + spec.seed * 7
        for e in spec.events:
            if isinstance(e, Rain) and e.start <= t < e.end:
                out += render.rain_layer((h, w), key, e.density, 0.25)[..., None]
        sigma = self._defocus(t) * h
        if sigma > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        cover = self._cover(t)
        if cover > 0:
            hand = render.pool((h, w), (0.3 * w, 0.2 * h), (w, h), 1.0) * 30 + 12
            tint = np.array([0.8, 0.9, 1.1], np.float32)  # skin or cloth, close to the lens
            out = out * (1 - cover) + (hand * cover)[..., None] * tint
        render.add_noise(out, key, spec.noise * min(2.5, 1 / math.sqrt(max(ambient, 0.16))))
        frame: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
        shown = t if not spec.loop else clock_t - (self._looped(clock_t) - t)  # frozen clock too
        clock = _time.strftime("%Y-%m-%d %H:%M:%S",
                               _time.gmtime(spec.epoch + 8 * 3600 + int(shown)))
        render.draw_osd(frame, clock)
        return frame

    # -- the script, as functions of t

    def _looped(self, t: float) -> float:
        return t % self.duration if self.spec.loop and self.duration > 0 else t

    def pan(self, t: float) -> float:
        """How far the camera is turned at ``t`` (picture widths)."""
        shift = 0.0
        for e in self.spec.events:
            if isinstance(e, Turn) and t >= e.start:
                shift = e.shift * min(1.0, (t - e.start) / e.duration)
                if e.end is not None and t >= e.end:
                    shift *= max(0.0, 1 - (t - e.end) / e.duration)
        return shift

    def _frozen_at(self, t: float) -> float:
        for e in self.spec.events:
            if isinstance(e, Freeze) and e.start <= t < e.end:
                return e.start
        return t

    def _ambient(self, t: float) -> float:
        level = self.spec.brightness
        for e in self.spec.events:
            if isinstance(e, Dusk) and t > e.start:
                level *= 1 + (e.to - 1) * min(1.0, (t - e.start) / max(e.end - e.start, 1e-6))
        return level

    def _lamp_level(self, t: float) -> float:
        on, since = self.spec.lamp_on, -1e9
        for e in self.spec.events:
            if isinstance(e, Lights) and since <= e.at <= t:
                on, since = e.on, e.at
        ramp = min(1.0, (t - since) / 0.4)  # a lamp takes a moment to come up or go out
        return ramp if on else 1.0 - ramp

    def _light_field(self, t: float, offset: int) -> np.ndarray | None:
        """Light per pixel (None: uniform ambient light)."""
        h, w = self.height, self.width
        field: np.ndarray | None = None
        lamp = self._lamp_level(t)
        if lamp > 0.01:
            field = self._lamp[:, offset:offset + w] * np.float32(0.7 * lamp)
        for e in self.spec.events:
            if isinstance(e, Headlights) and e.start <= t < e.start + e.duration:
                k = (t - e.start) / e.duration
                x = (-0.3 + 1.6 * k) if e.direction > 0 else (1.3 - 1.6 * k)
                beam = render.pool((h, w), (x * w, e.y * h), (0.16 * w, 0.12 * h), 1.5)
                beam *= np.float32(e.strength)
                field = beam if field is None else field + beam
        if field is None:
            return None
        return field + np.float32(self._ambient(t))

    def _defocus(self, t: float) -> float:
        for e in self.spec.events:
            if isinstance(e, Defocus) and e.start <= t < e.end:
                return e.sigma * min(1.0, (t - e.start) / 1.0)
        return 0.0

    def _cover(self, t: float) -> float:
        for e in self.spec.events:
            if isinstance(e, Cover) and e.start <= t < e.end + 0.5:
                return min(1.0, (t - e.start) / 0.5, (e.end + 0.5 - t) / 0.5)
        return 0.0

    # -- ground truth

    def _truth(self) -> tuple[Truth, ...]:
        spec = self.spec
        out: list[Truth] = []
        faults = [(e.start, e.end if e.end is not None else spec.duration, _FAULTS[type(e)])
                  for e in spec.events if isinstance(e, Cover | Freeze | Defocus | Turn | Drop)]
        for start, end, fault in faults:
            out.append(Truth("camera_fault", fault, start, end))
        blind = [(s, e) for s, e, f in faults if f in BLINDING]
        zones = list(spec.zones) or [FramePolygon(((0, 0), (1, 0), (1, 1), (0, 1)))]
        kind = "zone_intrusion" if spec.zones else "motion"
        for i, zone in enumerate(zones):
            name = f"zone{i + 1}" if spec.zones else "frame"
            for start, end, deep in self._presence(zone):
                seen = not any(s < end and start < e for s, e in blind)
                out.append(Truth(kind, name, start, end, seen and deep >= MIN_REQUIRED_S))
                if spec.zones and end - start > spec.dwell_s - 2:
                    sure = deep > spec.dwell_s + 2
                    out.append(Truth("loitering", name, start + spec.dwell_s, end, seen and sure))
        for e in spec.events:
            if isinstance(e, Lights):
                out.append(Truth("lights", "on" if e.on else "off", e.at, e.at + 1))
            elif isinstance(e, Dusk | Rain):
                out.append(Truth(type(e).__name__.lower(), "", e.start, e.end))
            elif isinstance(e, Headlights):
                out.append(Truth("headlights", "", e.start, e.start + e.duration))
        return tuple(sorted(out, key=lambda x: (x.start, x.kind)))

    def _presence(self, zone: FramePolygon) -> list[tuple[float, float, float]]:
        """Visits of ``zone`` (sampled at 10 Hz): intervals in which some person's foot point
        is in it or within :data:`BORDER` of its edge, with the time spent well inside."""
        poly = np.array(zone.points, np.float32).reshape(-1, 1, 2)
        spans: list[list[float]] = []  # start, end, time well inside
        for k in range(int(self.duration * 10)):
            t = k / 10
            depth = -1.0
            for path in self._walks:
                pos = path.at(t)
                if pos is not None:
                    x, y = pos[0][0] - self.pan(t), pos[0][1]
                    if 0 <= x <= 1:
                        depth = max(depth, cv2.pointPolygonTest(poly, (x, y), True))
            if depth <= -BORDER:
                continue
            if spans and t - spans[-1][1] <= PRESENCE_GAP_S:
                spans[-1][1] = t
            else:
                spans.append([t, t, 0.0])
            if depth >= BORDER:
                spans[-1][2] += 0.1
        return [(a, b, round(deep, 1)) for a, b, deep in spans]


DEMO_ZONE: Final = FramePolygon(((0.3, 0.62), (0.82, 0.62), (0.9, 0.97), (0.22, 0.97)))


def demo(name: str, width: int = 640, height: int = 360, index: int = 0) -> Scene:
    """A two-minute looping scene for the RTSP camera simulator
    (``--scene simulators.scenes:demo``): by ``index``, a street by day with people crossing
    the zone ``DEMO_ZONE`` and one loitering, the same at night with the lamp switched and
    headlights, or rain; every fourth camera also has a fault (covered, frozen, lost focus,
    turned, dropped) in the second minute. ``name`` seeds the background."""
    seed = sum(name.encode()) * 31 + index
    crossing: tuple[Event, ...] = (
        Walk(5, ((-0.08, 0.8), (1.08, 0.84)), 0.1),
        Walk(30, ((1.08, 0.75), (0.55, 0.78), (0.57, 0.8), (-0.08, 0.76)), 0.09,
             pauses=(0, 15, 15), shirt=(150, 90, 40), trousers=(30, 30, 30)),
        Walk(80, ((-0.08, 0.9), (1.08, 0.88)), 0.2, shirt=(200, 200, 200)),
    )
    kind = index % 3
    extra: tuple[Event, ...] = ()
    brightness = 1.0
    if kind == 1:
        brightness = 0.35
        extra = (Lights(20, True), Lights(70, False), Headlights(45, 3), Headlights(100, 3, -1))
    elif kind == 2:
        extra = (Rain(0, 120, 1.0),)
    faults: tuple[Event, ...] = (Cover(65, 80), Freeze(65, 85), Defocus(65, 85),
                                 Turn(65, 85, 0.2), Drop(65, 85))
    if index % 4 == 3:
        extra += (faults[(index // 4) % len(faults)],)
    return Scene(SceneSpec(name, seed, 120.0, crossing + extra, (DEMO_ZONE,), width=width,
                           height=height, brightness=brightness, loop=True))
