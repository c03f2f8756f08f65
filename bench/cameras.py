"""Camera capacity: how many 720p H.264 cameras this machine holds at 5 analysed frames a second.

The RTSP camera simulator (:mod:`simulators.rtsp_process`, a separate process: GStreamer,
x264) serves 720p cameras at ``--sim-fps``; this process pulls them with the capture fleet
(:class:`ingest.cameras.CameraFleet`, OpenCV/FFmpeg over RTSP/TCP, every frame decoded, 5 a
second converted and handed on) exactly as ``gridwatch run`` does, and measures:

1. **capacity**: the full chain (each camera's frames through :class:`ingest.video_stage.
   VideoStage` to the video detectors; their hits drained by the stage's ``periodic`` into
   a counting sink, with the evidence JPEG made on every raise: only the database is left
   out) on 1, 2, 4, 6, 8 … cameras, adding cameras to the running fleet, each step measured
   for ``--window`` s after ``--warmup`` s. A step is **held** when every camera was analysed
   at ≥ 99 % of 5 fps, ≤ 1 % of its sampled frames were dropped (replaced in the fleet's
   one-frame mailbox before the detectors took them) and ≤ 1 % of the frames the simulator
   pushed were lost before decoding (this decoder, or the simulator's encoder, falling
   behind). Stepping stops at the first step not held twice running (then the camera count
   just below it is tried) or at ``--max``;
2. **full chain against decode alone**, on ``--ratio-cameras`` cameras, fresh fleets,
   alternating ``--ratio-rounds`` times (so that a change in the machine's other load falls on
   both alike): the fleet with an ``on_frame`` that does nothing, then the full chain; the
   CPU time of this process per analysed frame in each, pooled over the rounds, and their
   ratio (goal ≤ 1.4). The detectors' own thread CPU is timed too, to split the difference;
3. **RSS per camera**: this process's RSS at each step, beyond its RSS before any camera.

CPU is this process's (all its threads); the simulator is another process and is left out,
but it shares the machine's cores, and rendering and x264-encoding a 720p stream costs it
about four times what pulling the stream costs here (measured: some 17 % against 4 % of a
core per camera at 15 fps). Every window therefore also prints the simulator's CPU, the
rest of the machine's and the load average, so the capacity can be read for what it is: a
lower bound for a machine that only pulls cameras.

What the cameras show (``--scene``): ``demo`` (default) is the project's realistic scene
(:func:`simulators.scenes.demo`): a street with people crossing a zone and one loitering, by
day, by night with a lamp and headlights, or in rain, with sensor noise that changes every
frame, so the H.264 stream carries the bits a real camera's does and the detectors do their
real work (every fourth camera also has a fault in the second minute of its two-minute
loop). It renders a 720p frame in 2–6 ms, less than x264 takes to encode it, so it is not
pre-rendered. ``box`` (the simulator's own moving box over a still background) halves the
simulator's cost, but decodes some 12 % cheaper than the demo (most blocks are skipped),
which flatters decode alone, and gives the detectors a box and no people.

OpenCV works on ``--opencv-threads`` threads, by default what the service sets
(``video.opencv_threads``, 1): cameras already run side by side, and OpenCV's own pool on a
2-core machine cost up to 1 ms a frame in hand-offs. The ratio moves by ±0.03 from run to
run on a quiet machine (what the demo scene shows in a run's window, and decode's own
spread): pool several rounds, and run ``--ratio-only`` when nothing else runs.

    .venv/bin/python bench/cameras.py                       # about 5 minutes
    .venv/bin/python bench/cameras.py --quick               # 1–1.5 minutes, coarse
    .venv/bin/python bench/cameras.py --ratio-only --ratio-rounds 4   # the ratio alone
    .venv/bin/python bench/cameras.py --sim-fps 25 --bitrate 4096 --max 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import psycopg

# bench/ingest.py would shadow the ingest package: the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import Hit
from detectors.video import VideoConfig
from detectors.video.pipeline import CameraState, Hits
from devices.registry import Device
from gridwatch.config import VideoSection
from ingest.cameras import CameraFleet, CameraFrame, CameraSource, CaptureSettings
from ingest.clip_recorder import ClipRecorder
from ingest.video_clips import ClipSettings, EncodedClip, Small
from ingest.video_stage import VideoStage
from simulators.rtsp_process import RtspSimulator
from simulators.scenes import DEMO_ZONE, OSD_MASK
from storage.media import MediaStore

WIDTH, HEIGHT = 1280, 720
SAMPLE_FPS = 5.0
HELD_RATE = 0.99  # of SAMPLE_FPS
HELD_DROP = 0.01  # of the sampled frames, and of the frames the simulator pushed
GOAL_RATIO = 1.4
SCENES = {"demo": "simulators.scenes:demo", "box": None}
DEMO_CAMERAS_MAX = 19  # the demo's 20th camera drops its stream in the second minute
CLK_TCK = os.sysconf("SC_CLK_TCK")
Handler = Callable[[CameraFrame], Awaitable[None]]
DetectFn = Callable[[np.ndarray, CameraState, float], tuple[CameraState, Hits]]


# -- what the kernel says ------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident set now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/PID/stat``)."""
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- the chain under test ------------------------------------------------------------------


class FrameLog:
    """Wraps the fleet's ``on_frame``: when each camera's frames were taken, and how long a
    frame waited from capture until its handler was done (the same cheap work in every run)."""

    def __init__(self, handler: Handler | None) -> None:
        self.handler = handler
        self.taken: dict[str, list[float]] = defaultdict(list)
        self.waits: list[float] = []

    async def on_frame(self, frame: CameraFrame) -> None:
        if self.handler is not None:
            await self.handler(frame)
        self.taken[frame.camera_id].append(frame.at)
        self.waits.append(time.time() - frame.at)

    def clear(self) -> None:
        self.taken.clear()
        self.waits.clear()

    def rate(self, camera_id: str) -> float:
        """Frames a second analysed, from the capture times (no window-edge rounding)."""
        times = self.taken.get(camera_id, [])
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


class NoDatabase:
    """What :meth:`VideoStage.periodic` needs of a connection: a transaction."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


def _clip_settings() -> ClipSettings:
    """As ``gridwatch run`` makes clips by default (``[video]`` clip settings)."""
    v = VideoSection()
    return ClipSettings(
        width=v.clip_width, pre_s=v.clip_pre_s, post_s=v.clip_post_s, rate=v.sample_fps,
        queue=v.clip_queue,
    )  # fmt: skip


class EncodedOnly(ClipRecorder):
    """The service's clip recorder (the pre-roll as the service keeps it, a clip encoded on the
    low-priority thread for every raise), with storing left out like the rest of the
    database."""

    def __init__(self, settings: ClipSettings) -> None:
        super().__init__(settings, MediaStore(Path(tempfile.mkdtemp(prefix="bench-clips-"))))
        self.encoded = 0
        self.cpu = 0.0  # thread CPU seconds in the pre-roll and the encoder
        self._lock = threading.Lock()
        encode = self._encode

        def timed_encode(frames: Sequence[np.ndarray], fps: float) -> EncodedClip:
            started = time.thread_time()
            try:
                return encode(frames, fps)
            finally:
                self._spent(time.thread_time() - started)

        self._encode = timed_encode

    def _spent(self, seconds: float) -> None:
        with self._lock:
            self.cpu += seconds

    def shrink(self, camera_id: str, image: np.ndarray, at: float, *, still: bool) -> Small:
        started = time.thread_time()
        try:
            return super().shrink(camera_id, image, at, still=still)
        finally:
            self._spent(time.thread_time() - started)

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> int:
        self.collector.close_quiet(now)
        self._submit()
        self._take_encoded()
        for clip, _ in self._ready:
            self.collector.release(clip)
        self.encoded += len(self._ready)
        self._ready = []
        return 0


class FullChain:
    """The video stage as the service wires it, with the database left out: hits are counted
    where the alert stage would correlate them, snapshots made but not stored."""

    def __init__(self, clips: bool = True) -> None:
        self.hits = 0
        self.snapshots = 0
        self.detector_cpu = 0.0  # thread CPU seconds inside CameraDetectors.on_frame
        self._lock = threading.Lock()
        self.clips = EncodedOnly(_clip_settings()) if clips else None
        self.stage = VideoStage(
            self._sink, config=VideoConfig(), save_snapshot=self._snapshot, clips=self.clips
        )
        self._conn = cast(psycopg.AsyncConnection, NoDatabase())

    def set_cameras(self, devices: list[Device]) -> None:
        """As the registry would; each camera's detectors timed, to split the chain's cost."""
        self.stage.set_cameras(devices)
        for detectors in self.stage.detectors.values():
            if "on_frame" not in vars(detectors):
                detectors.on_frame = self._timed(detectors.on_frame)  # type: ignore[method-assign,assignment]

    def _timed(self, on_frame: DetectFn) -> DetectFn:
        def timed(frame: np.ndarray, state: CameraState, ts: float) -> tuple[CameraState, Hits]:
            started = time.thread_time()
            try:
                return on_frame(frame, state, ts)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.detector_cpu += spent

        return timed

    async def _sink(self, conn: psycopg.AsyncConnection, hits: list[Hit], now: float) -> None:
        self.hits += len(hits)

    async def _snapshot(
        self, conn: psycopg.AsyncConnection, jpeg: bytes, hit: Hit
    ) -> dict[str, object]:
        self.snapshots += 1
        return {"media_id": "bench", "bytes": len(jpeg)}

    async def drain(self) -> None:
        """The pipeline's idle tick: apply what the detectors found, once a second."""
        while True:
            await asyncio.sleep(1.0)
            await self.stage.periodic(self._conn, time.time())


def devices_of(sim: RtspSimulator) -> list[Device]:
    """The simulated cameras as registry devices, with the demo scene's zone and OSD mask."""
    return [
        Device(device_id=name, type="camera", rtsp_url=url, zones=(DEMO_ZONE,), masks=(OSD_MASK,))
        for name, url in sim.urls.items()
    ]


def capture_settings() -> CaptureSettings:
    """As ``gridwatch run`` pulls cameras (gridwatch/service.py), with the default config."""
    health = VideoConfig().health
    return CaptureSettings(sample_fps=SAMPLE_FPS, no_frame_after_s=health.unreachable_after_s)


# -- one measured window -------------------------------------------------------------------


@dataclass(slots=True)
class Reading:
    """Counters at one instant, to be subtracted."""

    mono: float
    cpu: float
    sim_cpu: float
    busy: int
    total: int
    frames_in: dict[str, int]
    analysed: dict[str, int]
    dropped: dict[str, int]
    pushed: dict[str, int]
    detector_cpu: float
    clips_cpu: float


@dataclass(slots=True)
class Window:
    """A measured window, per camera where it says so."""

    label: str
    cameras: int
    seconds: float
    fps_analysed: float  # mean over cameras
    fps_analysed_min: float  # the worst camera
    fps_in: float  # decoded a second, mean over cameras
    fps_pushed: float  # sent by the simulator a second, mean over cameras
    dropped_pct: float  # of the sampled frames, worst camera
    lost_pct: float  # of the frames pushed, not decoded, worst camera
    frames: int  # analysed, all cameras
    cpu_ms_per_frame: float  # this process, per analysed frame
    detector_ms_per_frame: float  # of which in the detectors (their threads' CPU)
    clips_ms_per_frame: float  # and in the clips: pre-roll and encoding (threads' CPU)
    cpu_pct: float  # this process, % of one core
    sim_cpu_pct: float
    machine_pct: float  # all processes, % of one core (2 cores: 200)
    others_pct: float  # the machine less this process and the simulator
    wait_p95_ms: float  # capture → handler done
    rss_mb: float
    rss_per_camera_mb: float  # beyond the process before any camera
    load: str
    held: bool
    why: list[str] = field(default_factory=list)


async def read_counters(fleet: CameraFleet, sim: RtspSimulator, chain: FullChain | None) -> Reading:
    status = await asyncio.to_thread(sim.status)
    stats = fleet.stats()
    busy, total = machine_jiffies()
    sim_pid = sim.pid
    return Reading(
        mono=time.monotonic(),
        cpu=time.process_time(),
        sim_cpu=process_cpu_s(sim_pid) if sim_pid is not None else 0.0,
        busy=busy,
        total=total,
        frames_in={s.camera_id: s.frames_in for s in stats},
        analysed={s.camera_id: s.frames_analysed for s in stats},
        dropped={s.camera_id: s.frames_dropped for s in stats},
        pushed={s.name: s.frames_pushed for s in status},
        detector_cpu=chain.detector_cpu if chain is not None else 0.0,
        clips_cpu=chain.clips.cpu if chain is not None and chain.clips is not None else 0.0,
    )


async def measure(
    label: str,
    fleet: CameraFleet,
    log: FrameLog,
    sim: RtspSimulator,
    seconds: float,
    base_rss: float,
    chain: FullChain | None,
) -> Window:
    a = await read_counters(fleet, sim, chain)
    log.clear()
    await asyncio.sleep(seconds)  # the measured window itself: nothing to wait for
    b = await read_counters(fleet, sim, chain)
    waits = sorted(log.waits)
    log_rates = {cid: log.rate(cid) for cid in b.analysed}
    cameras = sorted(b.analysed)
    n = len(cameras)
    wall = b.mono - a.mono
    d_in = {c: b.frames_in[c] - a.frames_in.get(c, 0) for c in cameras}
    d_an = {c: b.analysed[c] - a.analysed.get(c, 0) for c in cameras}
    d_drop = {c: b.dropped[c] - a.dropped.get(c, 0) for c in cameras}
    d_push = {c: b.pushed.get(c, 0) - a.pushed.get(c, 0) for c in cameras}
    dropped = max(d_drop[c] / max(1, d_an[c] + d_drop[c]) for c in cameras)
    lost = max(max(0, d_push[c] - d_in[c]) / max(1, d_push[c]) for c in cameras)
    frames = sum(d_an.values())
    cpu = b.cpu - a.cpu
    ticks = max(1, b.total - a.total)
    cores = os.cpu_count() or 1
    rss = rss_mb()
    machine = 100 * cores * (b.busy - a.busy) / ticks
    rate_min = min(log_rates.values())
    why = []
    if rate_min < HELD_RATE * SAMPLE_FPS:
        why.append(f"a camera analysed at {rate_min:.2f} fps")
    if dropped > HELD_DROP:
        why.append(f"{100 * dropped:.1f} % of a camera's sampled frames dropped")
    if lost > HELD_DROP:
        why.append(f"{100 * lost:.1f} % of a camera's stream not decoded")
    return Window(
        label=label,
        cameras=n,
        seconds=round(wall, 2),
        fps_analysed=statistics.mean(log_rates.values()),
        fps_analysed_min=rate_min,
        fps_in=sum(d_in.values()) / n / wall,
        fps_pushed=sum(d_push.values()) / n / wall,
        dropped_pct=100 * dropped,
        lost_pct=100 * lost,
        frames=frames,
        cpu_ms_per_frame=1000 * cpu / max(1, frames),
        detector_ms_per_frame=1000 * (b.detector_cpu - a.detector_cpu) / max(1, frames),
        clips_ms_per_frame=1000 * (b.clips_cpu - a.clips_cpu) / max(1, frames),
        cpu_pct=100 * cpu / wall,
        sim_cpu_pct=100 * (b.sim_cpu - a.sim_cpu) / wall,
        machine_pct=machine,
        others_pct=max(0.0, machine - 100 * cpu / wall - 100 * (b.sim_cpu - a.sim_cpu) / wall),
        wait_p95_ms=1000 * waits[int(0.95 * (len(waits) - 1))] if waits else 0.0,
        rss_mb=rss,
        rss_per_camera_mb=(rss - base_rss) / n,
        load=load(),
        held=not why,
        why=why,
    )


async def until_streaming(fleet: CameraFleet, log: FrameLog, cameras: int, within: float) -> None:
    """Wait until every camera has handed over frames (polls: the fleet signals nothing)."""
    deadline = time.monotonic() + within
    while True:
        ready = sum(1 for s in fleet.stats() if s.connected and len(log.taken[s.camera_id]) >= 2)
        if ready >= cameras:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {ready} of {cameras} cameras streaming after {within:.0f} s")
        await asyncio.sleep(0.2)


# -- the runs --------------------------------------------------------------------------------


HEADER = (
    f"{'cams':>4} {'an fps':>6} {'min':>5} {'in fps':>6} {'sim':>5} {'drop%':>5} {'lost%':>5} "
    f"{'ms/fr':>6} {'det':>5} {'cpu%':>5} {'sim%':>5} {'other%':>6} {'wait95':>6} {'RSS MB':>6} "
    f"{'MB/cam':>6}  {'load':14} held"
)
LEGEND = """\
columns, per camera unless said: an fps analysed (mean, min = the worst camera); in fps
decoded; sim fps pushed by the simulator; drop% sampled frames replaced before the detectors
took them and lost% pushed frames never decoded (worst camera); ms/fr CPU of this process
per analysed frame (all cameras), det the part spent in the detectors; cpu% this process,
sim% the simulator, other% everything else on the machine (% of one core); wait95 capture →
handler done, p95 ms; RSS of this process and MB/cam beyond its RSS before any camera; load
average 1/5/15 min at the end of the window."""


def row(w: Window) -> str:
    return (
        f"{w.cameras:4} {w.fps_analysed:6.2f} {w.fps_analysed_min:5.2f} {w.fps_in:6.2f} "
        f"{w.fps_pushed:5.1f} {w.dropped_pct:5.1f} {w.lost_pct:5.1f} {w.cpu_ms_per_frame:6.2f} "
        f"{w.detector_ms_per_frame:5.2f} {w.cpu_pct:5.0f} {w.sim_cpu_pct:5.0f} "
        f"{w.others_pct:6.0f} {w.wait_p95_ms:6.0f} "
        f"{w.rss_mb:6.0f} {w.rss_per_camera_mb:6.1f}  {w.load:14} "
        + ("yes" if w.held else "NO: " + "; ".join(w.why))
    )


def steps(maximum: int) -> list[int]:
    return [n for n in [1, 2, *range(4, maximum + 1, 2)] if n <= maximum] + (
        [maximum] if maximum > 2 and maximum % 2 else []
    )


async def capacity(
    sim: RtspSimulator, args: argparse.Namespace, base_rss: float
) -> tuple[list[Window], int]:
    """The full chain on more and more cameras, one fleet growing; the largest N held."""
    devices = devices_of(sim)
    chain = FullChain(clips=not args.no_clips)
    log = FrameLog(chain.stage.on_frame)
    fleet = CameraFleet(
        [], capture_settings(), on_frame=log.on_frame, on_event=chain.stage.on_event
    )
    drain = asyncio.create_task(chain.drain())
    windows: list[Window] = []
    held = 0
    plan = steps(args.max)
    print(HEADER, flush=True)
    try:
        await fleet.start()
        i = 0
        while i < len(plan):
            n = plan[i]
            chain.set_cameras(devices[:n])
            await fleet.sync(CameraSource(d.device_id, d.rtsp_url or "") for d in devices[:n])
            await until_streaming(fleet, log, n, 30.0)
            await asyncio.sleep(args.warmup)  # detectors learn the background, rates settle
            # A step not held is measured once more: the machine is shared, and a burst of
            # someone else's work should not end the run.
            for _ in range(2):
                w = await measure(f"full×{n}", fleet, log, sim, args.window, base_rss, chain)
                windows.append(w)
                print(row(w), flush=True)
                if w.held:
                    break
            tried = {x.cameras for x in windows}
            if w.held:
                held = max(held, n)
            elif n - 1 > held and n - 1 not in tried:
                plan = [*plan[: i + 1], n - 1]  # the count the steps skipped, just below
            else:
                break
            i += 1
    finally:
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        await fleet.stop()
    clips = chain.clips.encoded if chain.clips is not None else 0
    print(f"video hits: {chain.hits}, evidence snapshots: {chain.snapshots}, clips: {clips}")
    return windows, held


async def one_run(
    label: str,
    sim: RtspSimulator,
    cameras: int,
    args: argparse.Namespace,
    base_rss: float,
    full: bool,
) -> Window:
    """A fresh fleet on ``cameras`` cameras: decode alone, or the full chain."""
    devices = devices_of(sim)[:cameras]
    chain = FullChain(clips=not args.no_clips) if full else None
    if chain is not None:
        chain.set_cameras(devices)
    log = FrameLog(chain.stage.on_frame if chain is not None else None)
    fleet = CameraFleet(
        [CameraSource(d.device_id, d.rtsp_url or "") for d in devices],
        capture_settings(),
        on_frame=log.on_frame,
        on_event=chain.stage.on_event if chain is not None else None,
    )
    drain = asyncio.create_task(chain.drain()) if chain is not None else None
    try:
        async with fleet:
            await until_streaming(fleet, log, cameras, 30.0)
            await asyncio.sleep(args.warmup)
            w = await measure(label, fleet, log, sim, args.ratio_window, base_rss, chain)
    finally:
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
    print(f"{label:12} " + row(w), flush=True)
    if chain is not None:  # what the evidence cost came from, over the whole run
        clips = chain.clips.encoded if chain.clips is not None else "off"
        print(
            f"{'':12}   raises and clears {chain.hits}, snapshots {chain.snapshots},"
            f" clips {clips}"
        )
    return w


def pooled(runs: list[Window]) -> tuple[float, float, float, float, bool]:
    """Over runs: CPU ms per analysed frame, of it in the detectors and in the clips, frames
    decoded per analysed frame, and whether every run was held."""
    frames = max(1, sum(w.frames for w in runs))
    ms = sum(w.cpu_ms_per_frame * w.frames for w in runs) / frames
    detector_ms = sum(w.detector_ms_per_frame * w.frames for w in runs) / frames
    clips_ms = sum(w.clips_ms_per_frame * w.frames for w in runs) / frames
    decoded = sum(w.fps_in * w.cameras * w.seconds for w in runs) / frames
    return ms, detector_ms, clips_ms, decoded, all(w.held for w in runs)


async def compare(
    sim: RtspSimulator, args: argparse.Namespace, base_rss: float
) -> tuple[list[Window], list[Window]]:
    """Decode alone and the full chain, alternating, so that a change in the machine's other
    load between runs falls on both alike."""
    decode: list[Window] = []
    full: list[Window] = []
    for _ in range(args.ratio_rounds):
        decode.append(await one_run("decode only", sim, args.ratio_cameras, args, base_rss, False))
        full.append(await one_run("full chain", sim, args.ratio_cameras, args, base_rss, True))
    return decode, full


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    load_at_start = load()
    print(
        f"machine: {cores} cores, load {load_at_start} (1/5/15 min) at start; "
        f"{os.uname().machine}, Python {sys.version.split()[0]}, OpenCV {cv2.__version__} "
        f"with {cv2.getNumThreads()} threads"
    )
    cameras = args.ratio_cameras if args.ratio_only else max(args.max, args.ratio_cameras)
    sim = RtspSimulator(
        cameras=cameras,
        width=WIDTH,
        height=HEIGHT,
        fps=args.sim_fps,
        bitrate_kbps=args.bitrate,
        scene=SCENES[args.scene],
    )
    await asyncio.to_thread(sim.start, 60.0)
    base_rss = rss_mb()
    print(
        f"simulator: pid {sim.pid}, {cameras} cameras {WIDTH}x{HEIGHT} H.264 (x264 "
        f"ultrafast) at {args.sim_fps} fps, {args.bitrate} kbit/s, scene {args.scene}; "
        f"analysed {SAMPLE_FPS:g} fps per camera"
    )
    print(f"this process before any camera: RSS {base_rss:.0f} MB\n{LEGEND}\n")
    try:
        windows: list[Window] = []
        held = 0
        if not args.ratio_only:
            print(
                f"capacity: full chain, {args.warmup:g} s warm-up + {args.window:g} s per "
                f"step (held: every camera ≥ {HELD_RATE * SAMPLE_FPS:.2f} fps analysed, ≤ "
                f"{100 * HELD_DROP:g} % dropped and ≤ {100 * HELD_DROP:g} % lost)"
            )
            windows, held = await capacity(sim, args, base_rss)
        print(
            f"\nfull chain against decode alone: {args.ratio_cameras} cameras, fresh fleets, "
            f"{args.ratio_rounds} round(s) of each, {args.warmup:g} s warm-up + "
            f"{args.ratio_window:g} s per run"
        )
        print(f"{'':12} " + HEADER)
        decode_runs, full_runs = await compare(sim, args, base_rss)
    finally:
        await asyncio.to_thread(sim.stop)

    decode_ms, _, _, decode_n, decode_held = pooled(decode_runs)
    full_ms, detector_ms, clips_ms, full_n, full_held = pooled(full_runs)
    ratio = full_ms / decode_ms
    at = next((w for w in windows if w.cameras == held and w.held), None)
    first = windows[0] if windows else None
    print("\n== summary ==")
    if not args.ratio_only:
        print(
            f"cameras held: {held} (720p H.264 at {args.sim_fps} fps, {args.bitrate} kbit/s, "
            f"scene {args.scene}; {SAMPLE_FPS:g} fps analysed, ≤ 1 % frames dropped)"
            + (f" — the most tried (--max {args.max})" if held >= args.max else "")
        )
    print(
        f"CPU per analysed frame, full chain / decode alone: {ratio:.2f} "
        f"({full_ms:.2f} ms / {decode_ms:.2f} ms on {args.ratio_cameras} cameras, "
        f"{decode_n:.2f} / {full_n:.2f} frames decoded per analysed frame; goal ≤ "
        f"{GOAL_RATIO}: {'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    print(
        f"  the full chain's {full_ms:.2f} ms: capture {decode_ms:.2f} + detectors "
        f"{detector_ms:.2f} + clips (pre-roll and encoding) {clips_ms:.2f} + the rest of the "
        f"chain {full_ms - decode_ms - detector_ms - clips_ms:.2f}"
    )
    if not (decode_held and full_held):
        print(
            "  (a comparison run was not held: the machine was short of CPU, so read the "
            "ratio with care)"
        )
    if at is not None and first is not None:
        marginal = (
            f", {(at.rss_mb - first.rss_mb) / (at.cameras - first.cameras):.1f} MB a camera "
            f"from {first.cameras} to {at.cameras}"
            if at.cameras > first.cameras
            else ""
        )
        print(
            f"RSS per camera: {at.rss_per_camera_mb:.1f} MB beyond the process's "
            f"{base_rss:.0f} MB before any camera (at {held} cameras: {at.rss_mb:.0f} MB"
            f"{marginal})"
        )
        print(
            f"at {held} cameras: this process {at.cpu_pct:.0f} % CPU, the simulator "
            f"{at.sim_cpu_pct:.0f} %, other processes {at.others_pct:.0f} %, the machine "
            f"{at.machine_pct:.0f} % of {100 * cores}"
        )
    print(
        f"load {load_at_start} at the start, {load()} at the end; "
        f"wall {time.perf_counter() - started:.0f} s"
    )
    return {
        "settings": {
            "width": WIDTH,
            "height": HEIGHT,
            "sim_fps": args.sim_fps,
            "bitrate_kbps": args.bitrate,
            "scene": args.scene,
            "sample_fps": SAMPLE_FPS,
            "cores": cores,
            "opencv_threads": cv2.getNumThreads(),
        },
        "base_rss_mb": base_rss,
        "capacity": [asdict(w) for w in windows],
        "cameras_held": held,
        "decode_only": [asdict(w) for w in decode_runs],
        "full_chain": [asdict(w) for w in full_runs],
        "decode_ms_per_frame": decode_ms,
        "full_ms_per_frame": full_ms,
        "detector_ms_per_frame": detector_ms,
        "clips_ms_per_frame": clips_ms,
        "ratio": ratio,
        "rss_per_camera_mb": at.rss_per_camera_mb if at is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=16, help="most cameras to try")
    parser.add_argument("--sim-fps", type=int, default=15, help="the cameras' frame rate")
    parser.add_argument("--bitrate", type=int, default=2048, help="H.264 kbit/s per camera")
    parser.add_argument("--scene", choices=sorted(SCENES), default="demo")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per capacity step")
    parser.add_argument("--ratio-cameras", type=int, default=2)
    parser.add_argument(
        "--ratio-rounds", type=int, default=2, help="decode-only/full-chain pairs of runs"
    )
    parser.add_argument(
        "--ratio-window", type=float, default=12.0, help="seconds measured per comparison run"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="up to 4 cameras, 3 s warm-up, 8 s windows, one comparison round (coarse: one "
        "dropped frame in 8 s is 2.5 %%)",
    )
    parser.add_argument(
        "--no-clips",
        action="store_true",
        help="leave the evidence clips out of the full chain (on by default, as in the service)",
    )
    parser.add_argument(
        "--ratio-only",
        action="store_true",
        help="skip the capacity steps: only the full chain against decode alone",
    )
    parser.add_argument(
        "--opencv-threads",
        type=int,
        default=VideoSection().opencv_threads,
        help="cv2.setNumThreads for the run (default: video.opencv_threads's default, as the "
        "service; 0: OpenCV's own choice, one a core)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/out/cameras.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.max, args.warmup, args.window = min(args.max, 4), 3.0, 8.0
        args.ratio_window, args.ratio_rounds = 8.0, 1
    if min(args.max, args.ratio_cameras, args.ratio_rounds) < 1:
        parser.error("--max, --ratio-cameras and --ratio-rounds must be at least 1")
    if args.scene == "demo" and max(args.max, args.ratio_cameras) > DEMO_CAMERAS_MAX:
        parser.error(f"the demo scene serves at most {DEMO_CAMERAS_MAX} steady cameras")
    if args.opencv_threads:  # as gridwatch/service.py does
        cv2.setNumThreads(args.opencv_threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = asyncio.run(run(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
