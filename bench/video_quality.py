"""Video detector quality on the labelled synthetic clip set (``bench/video_clips.py``).

Every clip is rendered at 5 fps and fed through the whole camera stack
(:class:`detectors.video.CameraDetectors`, default config) as a capture worker would:
``on_frame`` while the stream is up, ``on_no_frame`` while it is dropped. Raised hits are
matched against the clip's ground truth:

* a truth interval (``zone_intrusion``/``loitering``/``motion`` per zone, ``camera_fault`` per
  fault) is **found** when a raise of the same type and zone/fault falls within
  [start − 0.5 s, end + 3 s]; intervals marked not required (too short, or while the camera
  was blind) count neither way;
* a raise matching no interval is a **false event**; a second raise within one interval is
  a duplicate (counted, not false: the correlator joins it to the open grid event);
* a found interval is **restored** when its condition clears within 20 s after it ends.

Prints per clip group and in total: recall, precision, false events per camera-hour, detection
latency, and the detectors' cost per frame (CPU time of the calling thread, OpenCV
single-threaded, so other load on the machine does not count).

    .venv/bin/python bench/video_quality.py                 # the whole set, all cores
    .venv/bin/python bench/video_quality.py --group rain --group lights -v
    .venv/bin/python bench/video_quality.py --group last --size 1280x720

Most clips are 640×360 (``hd`` is 1280×720): a 720p camera's frames take another path to the
detectors' plane (two pyramid levels instead of one), which ``--size`` renders every chosen
clip at (the scenes are drawn at any size; rendering 720p costs ~6 ms a frame, so pick groups).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
from video_clips import FPS, clips

from detectors.video import CameraDetectors, VideoConfig
from simulators.scenes import Scene, SceneSpec, Truth

BEFORE_S = 0.5
GRACE_S = 3.0
RESTORE_S = 20.0
GOAL_RECALL = 0.98
GOAL_FALSE_PER_HOUR = 1.0


@dataclass(frozen=True, slots=True)
class Raised:
    type: str
    key: str
    ts: float
    condition: str


@dataclass(slots=True)
class ClipRun:
    name: str
    size: str
    duration: float
    truth: list[Truth]
    raised: list[Raised]
    cleared: list[Raised]
    frames: int
    detect_ms: list[float]
    render_ms: float


@dataclass(slots=True)
class Score:
    clips: int = 0
    hours: float = 0.0
    events: int = 0
    found: int = 0
    raised: int = 0
    false: int = 0
    duplicates: int = 0
    not_restored: int = 0
    latencies: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind: [events, found, false]

    def add(self, other: Score) -> None:
        for name in ("clips", "hours", "events", "found", "raised", "false", "duplicates",
                     "not_restored"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        self.notes += other.notes
        for kind, counts in other.kinds.items():
            mine = self.kinds.setdefault(kind, [0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n

    def count(self, kind: str, index: int) -> None:
        self.kinds.setdefault(kind, [0, 0, 0])[index] += 1

    @property
    def recall(self) -> float:
        return self.found / self.events if self.events else 1.0

    @property
    def precision(self) -> float:
        return (self.raised - self.false) / self.raised if self.raised else 1.0

    @property
    def false_per_hour(self) -> float:
        return self.false / self.hours if self.hours else 0.0


def run_clip(spec: SceneSpec, config: VideoConfig | None = None) -> ClipRun:
    cv2.setNumThreads(1)
    scene = Scene(spec)
    detectors = CameraDetectors(spec.name, config or VideoConfig(), scene.zones, scene.masks)
    state = detectors.initial_state()
    raised: list[Raised] = []
    cleared: list[Raised] = []
    detect_ms: list[float] = []
    render = 0.0
    frames = 0
    for t in scene.times(FPS):
        if scene.online(t):
            t0 = time.perf_counter()
            frame = scene.frame(t)
            t1 = time.perf_counter()
            c1 = time.thread_time()
            state, hits = detectors.on_frame(frame, state, t)
            detect_ms.append((time.thread_time() - c1) * 1000)
            render += t1 - t0
            frames += 1
        else:
            state, hits = detectors.on_no_frame(state, t)
        for hit in hits:
            key = str(hit.evidence.get("zone") or hit.evidence.get("fault") or "")
            item = Raised(hit.type, key, hit.ts, hit.condition_key)
            (raised if hit.raised else cleared).append(item)
    return ClipRun(spec.name, f"{spec.width}×{spec.height}", spec.duration, list(scene.truth),
                   raised, cleared, frames, detect_ms, render * 1000 / max(frames, 1))


def _window(truth: Truth) -> tuple[float, float]:
    return truth.start - BEFORE_S, truth.end + GRACE_S


def score(run: ClipRun) -> Score:
    s = Score(clips=1, hours=run.duration / 3600)
    events = [t for t in run.truth if t.is_event]
    hits_of: dict[int, list[Raised]] = defaultdict(list)
    for r in run.raised:
        owners = [i for i, t in enumerate(events)
                  if t.kind == r.type and t.key == r.key
                  and _window(t)[0] <= r.ts <= _window(t)[1]]
        if not owners:
            s.false += 1
            s.count(_kind(r.type, r.key), 2)
            s.notes.append(f"{run.name}: false {r.type}:{r.key} at {r.ts:.1f}s")
            continue
        owner = max(owners, key=lambda i: (events[i].start <= r.ts + BEFORE_S, events[i].start))
        if not events[owner].required:
            continue  # a hit on an optional interval counts neither way
        s.raised += 1
        hits_of[owner].append(r)
    s.raised += s.false
    for i, t in enumerate(events):
        if not t.required:
            continue
        s.events += 1
        s.count(_kind(t.kind, t.key), 0)
        mine = hits_of.get(i, [])
        if not mine:
            s.notes.append(f"{run.name}: missed {t.kind}:{t.key} {t.start:.1f}-{t.end:.1f}s")
            continue
        s.found += 1
        s.count(_kind(t.kind, t.key), 1)
        s.duplicates += len(mine) - 1
        first = min(mine, key=lambda r: r.ts)
        s.latencies.append(max(0.0, first.ts - t.start))
        if t.end < run.duration - RESTORE_S and not any(
            c.condition == first.condition and first.ts < c.ts <= t.end + RESTORE_S
            for c in run.cleared
        ):
            s.not_restored += 1
            s.notes.append(f"{run.name}: {t.kind}:{t.key} not restored after {t.end:.1f}s")
    return s


def _kind(kind: str, key: str) -> str:
    return f"camera_fault:{key}" if kind == "camera_fault" else kind


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 64 or height < 36:
        raise argparse.ArgumentTypeError(f"too small: {text!r}")
    return width, height


def _row(name: str, s: Score) -> str:
    lat = (f"{statistics.mean(s.latencies):5.1f} {max(s.latencies):5.1f}"
           if s.latencies else "    -     -")
    return (f"{name:12} {s.clips:5} {s.hours:6.3f} {s.events:6} {s.found:5} {s.raised:6} "
            f"{s.false:5} {s.duplicates:4} {s.not_restored:5} {s.recall:7.3f} {s.precision:9.3f} "
            f"{s.false_per_hour:8.2f} {lat}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", help="only these clip groups (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("-v", "--verbose", action="store_true", help="list misses and false events")
    parser.add_argument("--json", type=Path, default=Path("bench/out/video_quality.json"))
    parser.add_argument("--config", type=json.loads, default={},
                        help='VideoConfig overrides as JSON: {"motion": {"threshold": 30}}')
    parser.add_argument("--size", type=_size, default=None,
                        help="render every clip at WIDTHxHEIGHT instead of its own size")
    args = parser.parse_args(argv)
    config = VideoConfig.model_validate(args.config)
    specs = clips(args.group)
    if args.size is not None:
        specs = [replace(s, width=args.size[0], height=args.size[1]) for s in specs]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(run_clip, specs, [config] * len(specs)))
    wall = time.perf_counter() - started

    groups: dict[str, Score] = defaultdict(Score)
    total = Score()
    for run in runs:
        s = score(run)
        groups[run.name.split("_")[0]].add(s)
        total.add(s)
    print(f"{'group':12} {'clips':>5} {'hours':>6} {'events':>6} {'found':>5} {'raised':>6} "
          f"{'false':>5} {'dup':>4} {'unrst':>5} {'recall':>7} {'precision':>9} {'false/h':>8} "
          f"{'latency avg/max s':>17}")
    for name, s in groups.items():
        print(_row(name, s))
    print(_row("TOTAL", total))
    print("\nby kind: " + ", ".join(
        f"{kind} {found}/{events} found, {false} false"
        for kind, (events, found, false) in sorted(total.kinds.items())))
    print()
    cost: dict[str, dict[str, float]] = {}
    for size in sorted({run.size for run in runs}):
        ms = sorted(m for run in runs if run.size == size for m in run.detect_ms)
        render = statistics.mean(run.render_ms for run in runs if run.size == size)
        cost[size] = {"mean_ms": statistics.mean(ms), "median_ms": statistics.median(ms),
                      "p99_ms": ms[int(0.99 * (len(ms) - 1))], "frames": len(ms)}
        print(f"detectors at {size}: {cost[size]['mean_ms']:.2f} ms/frame mean, "
              f"{cost[size]['median_ms']:.2f} median, {cost[size]['p99_ms']:.2f} p99 over "
              f"{len(ms)} frames (CPU time; rendering {render:.2f} ms/frame)")
    print(f"wall {wall:.0f} s on {args.jobs} processes")
    ok = total.recall >= GOAL_RECALL and total.false_per_hour <= GOAL_FALSE_PER_HOUR
    print(f"goals: recall ≥ {GOAL_RECALL} and ≤ {GOAL_FALSE_PER_HOUR} false event per "
          f"camera-hour: {'met' if ok else 'NOT met'}")
    if args.verbose or not ok:
        for note in total.notes:
            print("  " + note)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out: dict[str, object] = {
            name: {**asdict(s), "recall": s.recall, "precision": s.precision,
                   "false_per_hour": s.false_per_hour}
            for name, s in {**groups, "TOTAL": total}.items()
        }
        out["cost"] = cost
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
