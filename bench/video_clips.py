"""The labelled set of synthetic camera clips: every scene of :mod:`simulators.scenes`, with
ground truth, for ``bench/video_quality.py`` (and anyone who wants the videos).

The set is code, not files: each clip is a :class:`~simulators.scenes.SceneSpec` made from a
seeded generator, so it is the same on every machine and costs nothing to store. 522 clips of
90 s (13.05 camera-hours), rendered at 5 fps by the bench, in groups:

- one scene each (``walk``, ``outside``, ``loiter``, ``lights``, ``dusk``, ``rain``,
  ``headlights``, ``noise``, the faults ``covered``/``frozen``/``blurred``/``turned``/
  ``dropped``, ``motion`` for cameras without zones), then harder ones (``mixed``,
  ``nightwalk``, ``far``, ``run``, ``storm``, ``hd`` at 1280×720) and ``random`` mixes: the
  detectors were tuned on these;
- ``holdout``: random mixes made after that tuning — their failures were studied and some
  fixed, so they are no longer unseen;
- ``fresh``: random mixes with faults, made after that and run once for the figures; their
  failures were studied and fixed since;
- ``unseen``: random mixes with faults from new seeds, made after those fixes; run once,
  two of the causes of its failures fixed since;
- ``last``: random mixes with faults from new seeds, made after that and run once (recall
  0.969, 0.83 false events per camera-hour); its failures were studied since and the
  detectors tuned on them (a fast walker whose legs fade, a walker's region that looks lit
  window by window), so it is no longer unseen;
- ``final``: random mixes with faults (the same generator) from new seeds, made only after
  those fixes and run once (recall 0.973, precision 0.988, 0.83 false events per
  camera-hour); studied since, one cause fixed (a background restart cleared someone
  standing through it);
- ``sealed``: 96 random mixes with faults from new seeds, made after that fix and run once
  (recall 0.967, precision 1.0, no false event); studied since, one cause fixed (a dark
  figure stopping under a lamp in heavy rain was learnt as light);
- ``blind``: 96 random mixes with faults from new seeds, made after that fix and run once for
  the figures (recall 0.980, precision 0.975, 1.67 false events per camera-hour); nothing was
  changed for it. The three first runs together (375 events, 6 camera-hours, never seen
  while tuning) give recall 0.973 and 0.83 false events per camera-hour: the honest
  estimate.

Most clips hold nuisances or a fault; many hold people crossing a zone or loitering too.

    .venv/bin/python bench/video_clips.py                 # list the clips and their truth
    .venv/bin/python bench/video_clips.py --out clips/    # write clips/<name>.mp4 + truth.json

Written videos are MPEG-4 part 2 (``mp4v``, what the opencv wheels encode), lossy: the
benchmark renders frames itself and never reads them back.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from devices.registry import FramePolygon
from simulators.scenes import (
    Cover,
    Defocus,
    Drop,
    Dusk,
    Event,
    Freeze,
    Headlights,
    Lights,
    Rain,
    Scene,
    SceneSpec,
    Turn,
    Walk,
)

DURATION = 90.0
FPS = 5.0

# Zones on the ground, in 0–1 frame coordinates, as an operator would draw them.
FORECOURT = FramePolygon(((0.3, 0.62), (0.82, 0.62), (0.9, 0.97), (0.22, 0.97)))
LEFT_GATE = FramePolygon(((0.02, 0.6), (0.3, 0.6), (0.3, 0.95), (0.02, 0.95)))
RIGHT_YARD = FramePolygon(((0.62, 0.58), (0.98, 0.58), (0.98, 0.9), (0.62, 0.9)))
NEAR_STRIP = FramePolygon(((0.0, 0.8), (1.0, 0.8), (1.0, 1.0), (0.0, 1.0)))
ZONE_SETS = ((FORECOURT,), (LEFT_GATE, RIGHT_YARD), (NEAR_STRIP,), (FORECOURT, LEFT_GATE))

ROAD_LUMA = 100.0  # the asphalt of simulators.scene_render
SHIRTS = ((40, 60, 160), (150, 90, 40), (60, 140, 60), (30, 30, 30), (200, 200, 200),
          (80, 160, 220), (120, 60, 120), (90, 110, 130))


def _walker(rng: random.Random, start: float, y: float | None = None,
            speed: float | None = None, pause: float = 0.0, pause_at: float | None = None) -> Walk:
    """Someone crossing the picture (left to right or back), optionally pausing on the way."""
    y0 = y if y is not None else rng.uniform(0.66, 0.92)
    y1 = y0 if y is not None else min(0.97, max(0.6, y0 + rng.uniform(-0.06, 0.06)))
    left = rng.random() < 0.5
    xa, xb = (-0.08, 1.08) if left else (1.08, -0.08)
    path: tuple[tuple[float, float], ...]
    pauses: tuple[float, ...] = ()
    if pause > 0:
        xm = pause_at if pause_at is not None else rng.uniform(0.4, 0.7)
        ym = (y0 + y1) / 2
        path = ((xa, y0), (xm, ym), (xm + rng.uniform(-0.05, 0.05), ym + 0.02), (xb, y1))
        pauses = (0.0, pause / 2, pause / 2)
    else:
        path = ((xa, y0), (xb, y1))
    shirt, trousers = rng.choice(SHIRTS), rng.choice(SHIRTS[3:])
    while max(abs(_luma(shirt) - ROAD_LUMA), abs(_luma(trousers) - ROAD_LUMA)) < 40:
        shirt = rng.choice(SHIRTS)  # not dressed head to foot in the colour of the road
    return Walk(start, path, speed or rng.uniform(0.07, 0.14), pauses, shirt=shirt,
                trousers=trousers, size=rng.uniform(0.9, 1.1))


def _luma(bgr: tuple[int, int, int]) -> float:
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def _spec(name: str, seed: int, events: list[Event], *, zones: int = 0, brightness: float = 1.0,
          lamp: tuple[float, float] = (0.62, 0.55), noise: float = 2.5) -> SceneSpec:
    """A clip; ``zones`` picks a zone set (-1: none, the camera reports motion)."""
    zone_set = ZONE_SETS[zones % len(ZONE_SETS)] if zones >= 0 else ()
    return SceneSpec(name, seed, DURATION, tuple(events), zone_set, brightness=brightness,
                     lamp=lamp, noise=noise)


def _walks(i: int, rng: random.Random) -> SceneSpec:
    starts = [rng.uniform(3, 15), rng.uniform(35, 50)]
    near = ZONE_SETS[i % len(ZONE_SETS)] == (NEAR_STRIP,)
    events: list[Event] = [_walker(rng, s, y=rng.uniform(0.84, 0.95) if near else None)
                           for s in starts]
    if i % 2:  # someone on the far pavement, outside every zone
        events.append(_walker(rng, rng.uniform(20, 60), y=0.54, speed=0.08))
    return _spec(f"walk_{i}", 100 + i, events, zones=i, brightness=1.0 if i < 5 else 0.45)


def _passers_by(i: int, rng: random.Random) -> SceneSpec:
    """People only outside the zone: nothing to report."""
    events: list[Event] = [_walker(rng, rng.uniform(5, 60), y=rng.uniform(0.55, 0.58))
                           for _ in range(3)]
    return _spec(f"outside_{i}", 150 + i, events, zones=0, brightness=1.0 if i else 0.5)


def _loiter(i: int, rng: random.Random) -> SceneSpec:
    pause = rng.uniform(32, 45) if i < 4 else rng.uniform(6, 10)  # the last ones only stop
    events: list[Event] = [_walker(rng, rng.uniform(5, 12), y=rng.uniform(0.72, 0.85),
                                   speed=0.08, pause=pause, pause_at=rng.uniform(0.45, 0.65))]
    return _spec(f"loiter_{i}", 200 + i, events, zones=0, brightness=1.0 if i % 2 else 0.5)


def _lights(i: int, rng: random.Random) -> SceneSpec:
    t, on = rng.uniform(4, 10), True
    events: list[Event] = []
    while t < DURATION - 5:
        events.append(Lights(t, on))
        on = not on
        t += rng.uniform(8, 18)
    if i == 4:
        events.append(_walker(rng, 50))
    lamp = (rng.uniform(0.4, 0.7), rng.uniform(0.55, 0.8))
    return _spec(f"lights_{i}", 300 + i, events, zones=i, brightness=rng.uniform(0.3, 0.45),
                 lamp=lamp)


def _dusk(i: int, rng: random.Random) -> SceneSpec:
    events: list[Event] = [Dusk(rng.uniform(5, 15), rng.uniform(60, 85), rng.uniform(0.22, 0.35))]
    if i == 3:
        events.append(_walker(rng, 70))
    return _spec(f"dusk_{i}", 400 + i, events, zones=i)


def _rain(i: int, rng: random.Random) -> SceneSpec:
    events: list[Event] = [Rain(rng.uniform(0, 10), DURATION, (0.5, 1.0, 1.5, 2.0, 1.0)[i])]
    if i == 4:
        events.append(_walker(rng, 40))
    return _spec(f"rain_{i}", 500 + i, events, zones=i, brightness=1.0 if i % 2 else 0.5)


def _headlights(i: int, rng: random.Random) -> SceneSpec:
    events: list[Event] = []
    t = rng.uniform(3, 10)
    while t < DURATION - 6:
        events.append(Headlights(t, rng.uniform(2.0, 4.0), rng.choice((1, -1)),
                                 rng.uniform(0.65, 0.85), rng.uniform(0.8, 1.5)))
        t += rng.uniform(7, 16)
    if i == 4:
        events.append(_walker(rng, 45))
    return _spec(f"headlights_{i}", 600 + i, events, zones=i, brightness=rng.uniform(0.3, 0.45))


def _noise(i: int, rng: random.Random) -> SceneSpec:
    return _spec(f"noise_{i}", 700 + i, [], zones=i, brightness=rng.uniform(0.25, 0.4),
                 noise=rng.uniform(5, 8))


def _fault(kind: str, i: int, rng: random.Random) -> SceneSpec:
    start = rng.uniform(20, 35)
    end = start + rng.uniform(25, 40)
    event: Event
    if kind == "covered":
        event = Cover(start, end)
    elif kind == "frozen":
        event = Freeze(start, end)
    elif kind == "blurred":
        event = Defocus(start, end, rng.uniform(0.008, 0.016))
    elif kind == "turned":
        back = end if i < 2 else None
        event = Turn(start, back, rng.choice((-1, 1)) * rng.uniform(0.12, 0.25))
    else:
        event = Drop(start, end)
    events: list[Event] = [event]
    if i == 1:  # a walker long before or after the fault
        events.append(_walker(rng, 3.0 if start > 25 else end + 8))
    return _spec(f"{kind}_{i}", 800 + 10 * len(kind) + i, events, zones=i,
                 brightness=1.0 if i != 2 else 0.45)


def _motion(i: int, rng: random.Random) -> SceneSpec:
    """Cameras without zones: motion anywhere in the picture."""
    events: list[Event] = [_walker(rng, rng.uniform(5, 20)), Rain(0, DURATION, 0.7)] if i else [
        _walker(rng, rng.uniform(5, 20)), _walker(rng, rng.uniform(50, 60))]
    return _spec(f"motion_{i}", 900 + i, events, zones=-1, brightness=1.0 if i else 0.5)


def _mixed(i: int, rng: random.Random) -> SceneSpec:
    if i == 0:
        events: list[Event] = [Rain(0, DURATION, 1.0), Headlights(12, 3), Headlights(55, 3, -1),
                               _walker(rng, 25)]
        return _spec("mixed_0", 950, events, zones=0, brightness=0.4)
    events = [Dusk(0, 60, 0.35), Lights(30, True), Lights(75, False),
              _walker(rng, 35, y=0.8, speed=0.08, pause=35, pause_at=0.55)]
    return _spec("mixed_1", 951, events, zones=0)


def _night_walks(i: int, rng: random.Random) -> SceneSpec:
    """Dark clothes in a dark, noisy picture."""
    dark = ((30, 30, 30), (50, 45, 40), (60, 60, 70), (40, 50, 40))
    events: list[Event] = [
        Walk(s, w.path, w.speed, w.pauses, rng.choice(dark), rng.choice(dark), w.size)
        for s in (rng.uniform(5, 20), rng.uniform(45, 60)) for w in [_walker(rng, s)]
    ]
    return _spec(f"nightwalk_{i}", 1000 + i, events, zones=i if i != 2 else 0,
                 brightness=rng.uniform(0.28, 0.4), noise=rng.uniform(2.5, 4.5))


def _far(i: int, rng: random.Random) -> SceneSpec:
    """Small figures far away, entering a zone near the horizon."""
    far_zone = FramePolygon(((0.1, 0.58), (0.9, 0.58), (0.9, 0.7), (0.1, 0.7)))
    events: list[Event] = [Walk(s, ((-0.08, y), (1.08, y)), rng.uniform(0.05, 0.09),
                                shirt=rng.choice(SHIRTS), trousers=rng.choice(SHIRTS[3:]),
                                size=rng.uniform(0.8, 1.0))
                           for s, y in ((rng.uniform(3, 10), rng.uniform(0.62, 0.66)),
                                        (rng.uniform(45, 55), rng.uniform(0.62, 0.66)))]
    return SceneSpec(f"far_{i}", 1100 + i, DURATION, tuple(events), (far_zone,),
                     brightness=1.0 if i % 2 == 0 else 0.5)


def _run(i: int, rng: random.Random) -> SceneSpec:
    events: list[Event] = [_walker(rng, s, y=rng.uniform(0.7, 0.92), speed=rng.uniform(0.22, 0.3))
                           for s in (rng.uniform(5, 15), rng.uniform(50, 60))]
    return _spec(f"run_{i}", 1200 + i, events, zones=0, brightness=1.0 if i == 0 else 0.5)


def _storm(i: int, rng: random.Random) -> SceneSpec:
    """Everything at once, at night: heavy rain, beams sweeping, a lamp going on and off."""
    events: list[Event] = [Rain(0, DURATION, rng.uniform(2.0, 3.0)), Lights(20, True),
                           Lights(62, False)]
    t = rng.uniform(5, 10)
    while t < DURATION - 6:
        events.append(Headlights(t, rng.uniform(2.0, 3.5), rng.choice((1, -1)),
                                 rng.uniform(0.65, 0.85), rng.uniform(0.8, 1.4)))
        t += rng.uniform(10, 20)
    if i == 2:
        events.append(_walker(rng, 40))
    return _spec(f"storm_{i}", 1300 + i, events, zones=i % 2, brightness=rng.uniform(0.3, 0.4))


def _hd(i: int, rng: random.Random) -> SceneSpec:
    """1280×720 cameras: a walker, and a nuisance or a fault."""
    extra: list[list[Event]] = [[Rain(0, DURATION, 1.0)], [Dusk(5, 60, 0.3)],
                                [Defocus(40, 75, 0.01)], [Turn(40, 75, 0.15)]]
    events: list[Event] = [_walker(rng, rng.uniform(5, 15)), *extra[i]]
    return SceneSpec(f"hd_{i}", 1400 + i, DURATION, tuple(events), ZONE_SETS[i % len(ZONE_SETS)],
                     width=1280, height=720, brightness=1.0 if i % 2 else 0.5)


def _random(i: int, rng: random.Random, group: str = "random", seed: int = 2000,
            faults: bool = False) -> SceneSpec:
    """A random mix: any light level, up to three nuisances, up to three people (and with
    ``faults``, a camera fault in a third of the clips)."""
    events: list[Event] = []
    if faults and rng.random() < 1 / 3:
        start = rng.uniform(20, 40)
        end = start + rng.uniform(25, 40)
        events.append(rng.choice([Cover(start, end), Freeze(start, end),
                                  Defocus(start, end, rng.uniform(0.008, 0.016)),
                                  Turn(start, end, rng.choice((-1, 1)) * rng.uniform(0.12, 0.25)),
                                  Drop(start, end)]))
    night = rng.random() < 0.5
    for kind in rng.sample(("lights", "dusk", "rain", "headlights"), rng.randint(0, 3)):
        if kind == "lights":
            t = rng.uniform(5, 30)
            while t < DURATION - 5:
                events.append(Lights(t, len(events) % 2 == 0))
                t += rng.uniform(10, 30)
        elif kind == "dusk" and not night:
            events.append(Dusk(rng.uniform(0, 30), rng.uniform(50, 90), rng.uniform(0.25, 0.5)))
        elif kind == "rain":
            events.append(Rain(rng.uniform(0, 40), DURATION, rng.uniform(0.3, 2.0)))
        elif kind == "headlights" and night:
            for _ in range(rng.randint(2, 5)):
                events.append(Headlights(rng.uniform(0, DURATION - 5), rng.uniform(2, 4),
                                         rng.choice((1, -1)), rng.uniform(0.62, 0.9),
                                         rng.uniform(0.8, 1.5)))
    for _ in range(rng.randint(0, 3)):
        events.append(_walker(rng, rng.uniform(0, DURATION - 20),
                              speed=rng.uniform(0.05, 0.2),
                              pause=rng.choice((0.0, 0.0, rng.uniform(5, 40)))))
    return _spec(f"{group}_{i}", seed + i, events, zones=rng.randrange(-1, len(ZONE_SETS)),
                 brightness=rng.uniform(0.3, 0.5) if night else rng.uniform(0.7, 1.1),
                 lamp=(rng.uniform(0.3, 0.8), rng.uniform(0.5, 0.85)),
                 noise=rng.uniform(1.5, 4.0))


GROUPS: dict[str, tuple[int, Callable[[int, random.Random], SceneSpec]]] = {
    "walk": (8, _walks),
    "outside": (2, _passers_by),
    "loiter": (5, _loiter),
    "lights": (5, _lights),
    "dusk": (4, _dusk),
    "rain": (5, _rain),
    "headlights": (5, _headlights),
    "noise": (3, _noise),
    "covered": (3, lambda i, r: _fault("covered", i, r)),
    "frozen": (3, lambda i, r: _fault("frozen", i, r)),
    "blurred": (3, lambda i, r: _fault("blurred", i, r)),
    "turned": (3, lambda i, r: _fault("turned", i, r)),
    "dropped": (3, lambda i, r: _fault("dropped", i, r)),
    "motion": (2, _motion),
    "mixed": (2, _mixed),
    "nightwalk": (5, _night_walks),
    "far": (3, _far),
    "run": (3, _run),
    "storm": (3, _storm),
    "hd": (4, _hd),
    "random": (24, _random),
    # made after the detectors were tuned on the groups above; looked at and tuned on since
    "holdout": (40, lambda i, r: _random(i, r, "holdout", 3000)),
    # made last, run once for the figures, never tuned on
    "fresh": (48, lambda i, r: _random(i, r, "fresh", 5000, faults=True)),
    # made after the fresh group's failures were studied and fixed; run, studied, two fixed
    "unseen": (48, lambda i, r: _random(i, r, "unseen", 7000, faults=True)),
    # made after those fixes; run once, studied, tuned on since
    "last": (48, lambda i, r: _random(i, r, "last", 9000, faults=True)),
    # made after the fixes for the last group; run once, studied, one cause fixed since
    "final": (48, lambda i, r: _random(i, r, "final", 11000, faults=True)),
    # made after that fix, twice the size; run once (recall 0.967), studied, one cause fixed
    "sealed": (96, lambda i, r: _random(i, r, "sealed", 13000, faults=True)),
    # made after that fix; run once for the figures, nothing changed for it
    "blind": (96, lambda i, r: _random(i, r, "blind", 15000, faults=True)),
}


def clips(groups: list[str] | None = None) -> list[SceneSpec]:
    """The clip set (or the named groups of it), always the same."""
    out = []
    for group, (count, make) in GROUPS.items():
        if groups and group not in groups:
            continue
        for i in range(count):
            out.append(make(i, random.Random(f"{group}-{i}")))
    return out


def write(spec: SceneSpec, folder: Path) -> Path:
    """``<name>.mp4`` at :data:`FPS`; frames while the stream is dropped are left out."""
    import cv2

    scene = Scene(spec)
    path = folder / f"{spec.name}.mp4"
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, FPS, (spec.width, spec.height))
    try:
        for t in scene.times(FPS):
            if scene.online(t):
                writer.write(scene.frame(t))
    finally:
        writer.release()
    return path


def truth_json(specs: list[SceneSpec]) -> dict[str, object]:
    out: dict[str, object] = {}
    for spec in specs:
        scene = Scene(spec)
        out[spec.name] = {
            "duration_s": spec.duration,
            "size": [spec.width, spec.height],
            "zones": [z.to_json() for z in spec.zones],
            "masks": [m.to_json() for m in spec.masks],
            "truth": [{"kind": t.kind, "key": t.key, "start": round(t.start, 2),
                       "end": round(t.end, 2), "required": t.required} for t in scene.truth],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the clips (mp4) and truth.json here")
    parser.add_argument("--group", action="append", help="only these groups (repeatable)")
    args = parser.parse_args(argv)
    specs = clips(args.group)
    truth = truth_json(specs)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False))
        for spec in specs:
            print(write(spec, args.out))
        return 0
    for name, item in truth.items():
        assert isinstance(item, dict)
        events = [f"{t['kind']}:{t['key']}@{t['start']}-{t['end']}{'' if t['required'] else '?'}"
                  for t in item["truth"]]
        print(f"{name:14} {' '.join(events)}")
    print(f"{len(specs)} clips, {len(specs) * DURATION / 3600:.2f} camera-hours", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
