"""What clips around video raises cost: the pre-roll every analysed frame pays, and the
encoding every clip pays.

In one process, on frames of the synthetic scenes, single-threaded OpenCV as the service
runs it:

* per frame, every frame shrunk (a walker in the rain at night, so that the frames are as
  busy as a camera's): the video detectors of one camera (``CameraDetectors.on_frame``),
  and the pre-roll (downscale to ``--width`` + ring bookkeeping) right after them on the same
  frame as the service runs it, with the ratio of the two, at 640×360 and 1280×720 (and the
  pre-roll alone on frames read from memory, the worst case); also ``INTER_LINEAR``'s and
  ``INTER_AREA``'s cost for comparison (``shrink`` takes the nearest pixel from twice the
  width up);
* still frames, per scene at 1280×720 over ``--seconds`` (the rain and walker above, the
  four kinds of camera of :func:`simulators.scenes.demo` that ``bench/cameras.py`` serves:
  day, night with lights and headlights, rain, day with a covered lens; and an empty
  street): the share of frames the detectors saw as still, the share whose pre-roll frame
  was the last still one again, the pre-roll's cost per frame with every frame shrunk and
  with still frames standing on the last one (both on the same frames, after their own
  detectors, medians over ``--repeat`` passes with their spread), the clips the scene's
  raises made (distinct frames per clip, Motion-JPEG CPU per clip, each encoded
  ``--repeat`` times) and what clips cost per analysed frame in all (pre-roll + encoding),
  and the same for one clip raised at mid-scene whatever it shows (the empty street raises
  nothing);
* per clip: the encode time (wall and CPU) and size of a full clip (pre + post roll at the
  analysed rate) for each format: Motion-JPEG AVI (``video.clip_format = "mjpeg"``, at
  ``--quality``), OpenCV's own MJPG writer on the same frames for comparison, and WebM VP8;
  and the ring's memory per camera.

    .venv/bin/python bench/video_clip_cost.py
    .venv/bin/python bench/video_clip_cost.py --frames 200 --clips 5 --json bench/out/clips.json
    .venv/bin/python bench/video_clip_cost.py --only still --seconds 60 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# bench/ingest.py would shadow the ingest package: the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.video import VideoConfig
from detectors.video.pipeline import CameraDetectors, CameraState
from devices.registry import Device
from ingest.video_clips import (
    Clip,
    ClipCollector,
    ClipSettings,
    encode_mjpeg,
    encode_webm,
    pre_roll_frame,
    shrink,
)
from ingest.video_stage import is_still
from simulators.scenes import (
    DEMO_ZONE,
    OSD_MASK,
    Dusk,
    Rain,
    Scene,
    SceneSpec,
    Walk,
    demo,
)  # fmt: skip

RATE = 5.0


def scene(width: int, height: int) -> Scene:
    events = (
        Walk(1, ((-0.08, 0.8), (1.08, 0.84)), 0.1),
        Rain(0, 600, 0.6),
        Dusk(0, 1.0, 0.3),
    )
    return Scene(SceneSpec("bench", 5, 600.0, events, (DEMO_ZONE,), width=width, height=height))


SCENES: dict[str, Callable[[int, int], Scene]] = {
    "rain+walker": scene,
    "demo day": lambda w, h: demo("cam-0", w, h, 0),
    "demo night": lambda w, h: demo("cam-1", w, h, 1),
    "demo rain": lambda w, h: demo("cam-2", w, h, 2),
    "demo covered": lambda w, h: demo("cam-3", w, h, 3),
    "empty street": lambda w, h: Scene(
        SceneSpec("empty", 3, 600.0, (), (DEMO_ZONE,), width=w, height=h)
    ),
}


def camera() -> Device:
    return Device(
        device_id="CAM", type="camera", rtsp_url="rtsp://x", zones=(DEMO_ZONE,), masks=(OSD_MASK,)
    )


def frames_of(width: int, height: int, count: int) -> list[tuple[float, np.ndarray]]:
    s = scene(width, height)
    out = []
    for i in range(count):
        image = s.frame(i / RATE)
        image.setflags(write=False)  # as the capture hands them over
        out.append((i / RATE, image))
    return out


def per_frame_ms(
    fn: Callable[[float, np.ndarray], object],
    frames: list,
    repeat: int,
    before: Callable[[float, np.ndarray], object] | None = None,
) -> float:
    """Median over ``repeat`` passes of the mean time of ``fn`` per frame (ms); ``before``
    runs on each frame first, untimed (the detectors, which leave the frame in the cache as
    they do in the service before the pre-roll)."""
    passes = []
    for _ in range(repeat):
        total = 0.0
        for at, image in frames:
            if before is not None:
                before(at, image)
            start = time.perf_counter()
            fn(at, image)
            total += time.perf_counter() - start
        passes.append(total / len(frames) * 1000)
    return statistics.median(passes)


def frame_costs(width: int, height: int, args: argparse.Namespace) -> dict[str, float]:
    frames = frames_of(width, height, args.frames)
    detectors = CameraDetectors.for_device(camera(), VideoConfig())
    state = [detectors.initial_state()]

    def detect(at: float, image: np.ndarray) -> None:
        state[0], _ = detectors.on_frame(image, state[0], at)

    collector = ClipCollector(ClipSettings(width=args.width, rate=RATE))

    def pre_roll(at: float, image: np.ndarray) -> None:
        collector.push("CAM", shrink(image, args.width), at)

    def resize(interpolation: int) -> Callable[[float, np.ndarray], None]:
        def run(at: float, image: np.ndarray) -> None:
            h = round(image.shape[0] * args.width / image.shape[1]) // 2 * 2
            cv2.resize(image, (args.width, h), interpolation=interpolation)

        return run

    detect_ms = per_frame_ms(detect, frames, args.repeat)
    ring_ms = per_frame_ms(pre_roll, frames, args.repeat, before=detect)
    cold_ms = per_frame_ms(pre_roll, frames, args.repeat)
    linear_ms = per_frame_ms(resize(cv2.INTER_LINEAR), frames, args.repeat, before=detect)
    area_ms = per_frame_ms(resize(cv2.INTER_AREA), frames, args.repeat, before=detect)
    ring = collector.rings["CAM"]
    return {
        "detectors_ms": round(detect_ms, 3),
        "pre_roll_ms": round(ring_ms, 3),
        "pre_roll_cold_ms": round(cold_ms, 3),
        "pre_roll_share_of_detectors": round(ring_ms / detect_ms, 3),
        "inter_linear_resize_ms": round(linear_ms, 3),
        "inter_area_resize_ms": round(area_ms, 3),
        "ring_frames": len(ring),
        "ring_mib": round(sum(f.nbytes for _, f in ring) / 2**20, 2),
    }


class PreRoll:
    """One camera's detectors and pre-roll as the video stage runs them, every frame shrunk
    (``skip`` False) or still frames standing on the last still one (``skip`` True); the
    pre-roll (the still test, the shrink, the ring, starting clips) is timed. Untimed, the
    same frames also make one clip raised at ``sample_at`` whatever the scene shows then
    (an empty street raises nothing), to encode."""

    def __init__(self, settings: ClipSettings, skip: bool, sample_at: float) -> None:
        self.settings = settings
        self.skip = skip
        self.detectors = CameraDetectors.for_device(camera(), VideoConfig())
        self.state: CameraState = self.detectors.initial_state()
        self.collector = ClipCollector(settings)
        self.sampler = ClipCollector(settings)
        self.sample_at = sample_at
        self.seconds = 0.0
        self.frames = 0
        self.still = 0
        self.reused = 0

    def on_frame(self, image: np.ndarray, at: float) -> None:
        self.state, found = self.detectors.on_frame(image, self.state, at)
        hits = tuple(found)
        s, collector = self.settings, self.collector
        start = time.perf_counter()
        still = self.skip and is_still(self.state, hits, at, s.still_share)
        small = pre_roll_frame(image, at, s, still=still, last=collector.last.get("CAM"))
        collector.push("CAM", small, at)
        if any(h.raised for h in hits):
            collector.on_raise("CAM", at)
        self.seconds += time.perf_counter() - start
        self.sampler.push("CAM", small.frame, at)
        if at == self.sample_at:
            self.sampler.on_raise("CAM", at)
        self.frames += 1
        self.still += is_still(self.state, hits, at, s.still_share)
        self.reused += small.at != at

    def clips(self) -> list[Clip]:
        self.collector.finish_all()
        return self.collector.take_finished()

    def sample(self) -> list[Clip]:
        self.sampler.finish_all()
        return self.sampler.take_finished()


def distinct(clip: Clip) -> int:
    """Frames of the clip the encoder encodes: not the same array as the one before."""
    return sum(1 for a, b in zip([None, *clip.frames], clip.frames, strict=False) if a is not b)


def encode_cpu_ms(clips: list[Clip], quality: int, repeat: int) -> float:
    """Median over ``repeat`` rounds of the Motion-JPEG CPU time per clip (ms)."""
    rounds = []
    for _ in range(repeat):
        cpu = time.process_time()
        for clip in clips:
            encode_mjpeg(clip.frames, RATE, quality=quality)
        rounds.append((time.process_time() - cpu) / len(clips) * 1000)
    return statistics.median(rounds)


def still_costs(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both pre-rolls on the same frames of the scene, each after its own detectors (the
    frame in the cache as in the service), the order alternating from pass to pass."""
    settings = ClipSettings(width=args.width, rate=RATE)
    sc = SCENES[name](1280, 720)
    times = [i / RATE for i in range(round(args.seconds * RATE)) if sc.online(i / RATE)]
    sample_at = times[len(times) // 2]
    per_frame: dict[bool, list[float]] = {False: [], True: []}
    last: dict[bool, PreRoll] = {}
    for n in range(args.repeat):
        rolls = {skip: PreRoll(settings, skip, sample_at) for skip in (False, True)}
        order = [rolls[False], rolls[True]] if n % 2 == 0 else [rolls[True], rolls[False]]
        for at in times:
            image = sc.frame(at)
            image.setflags(write=False)  # as the capture hands them over
            for roll in order:
                roll.on_frame(image, at)
        for skip, roll in rolls.items():
            per_frame[skip].append(roll.seconds / roll.frames * 1000)
        last = rolls
    plain, skipping = last[False], last[True]
    clips = {skip: roll.clips() for skip, roll in last.items()}
    out: dict[str, Any] = {
        "frames": plain.frames,
        "still_share": round(plain.still / plain.frames, 3),
        "reused_share": round(skipping.reused / skipping.frames, 3),
        "raises_clips": len(clips[True]),
    }
    for skip, label in ((False, "every_frame"), (True, "still_skipped")):
        ms = per_frame[skip]
        out[f"pre_roll_ms_{label}"] = round(statistics.median(ms), 4)
        out[f"pre_roll_ms_{label}_spread"] = [round(min(ms), 4), round(max(ms), 4)]
        encode_ms = encode_cpu_ms(clips[skip], args.quality, args.repeat) if clips[skip] else 0.0
        frames = [len(c.frames) for c in clips[skip]]
        encoded = [distinct(c) for c in clips[skip]]
        out[f"clip_frames_{label}"] = round(statistics.mean(frames), 1) if frames else 0
        out[f"clip_distinct_frames_{label}"] = round(statistics.mean(encoded), 1) if frames else 0
        out[f"encode_cpu_ms_per_clip_{label}"] = round(encode_ms, 2)
        out[f"clips_ms_per_frame_{label}"] = round(
            statistics.median(ms) + encode_ms * len(clips[skip]) / plain.frames, 4
        )
        sample = last[skip].sample()
        out[f"mid_clip_distinct_frames_{label}"] = distinct(sample[0])
        out[f"mid_clip_encode_cpu_ms_{label}"] = round(
            encode_cpu_ms(sample, args.quality, args.repeat), 2
        )
        out["mid_clip_frames"] = len(sample[0].frames)
    return out


def opencv_mjpg(frames: list[np.ndarray], fps: float) -> bytes:
    """OpenCV's VideoWriter (FFmpeg) with fourcc MJPG into an AVI: the alternative to the
    RIFF writer of ``encode_mjpeg`` (its JPEG quality cannot be set)."""
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="gridwatch-bench-") as tmp:
        path = os.path.join(tmp, "clip.avi")
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, fourcc, fps, (width, height))
        for frame in frames:
            writer.write(frame)
        writer.release()
        with open(path, "rb") as f:
            return f.read()


def clip_costs(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    settings = ClipSettings(width=args.width, rate=RATE)
    length = settings.pre_frames + settings.post_frames
    frames = [shrink(image, args.width) for _, image in frames_of(1280, 720, length * args.clips)]
    encoders: dict[str, Callable[[list[np.ndarray], float], bytes]] = {
        "mjpeg": lambda part, fps: encode_mjpeg(part, fps, quality=args.quality).data,
        "opencv_mjpg": opencv_mjpg,
        "webm": lambda part, fps: encode_webm(part, fps).data,
    }
    out: dict[str, dict[str, float]] = {}
    for name, encode in encoders.items():
        walls, cpus, sizes = [], [], []
        for n in range(args.clips):
            part = frames[n * length : (n + 1) * length]
            wall, cpu = time.perf_counter(), time.process_time()
            data = encode(part, RATE)
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
            sizes.append(len(data))
        out[name] = {
            "frames_per_clip": length,
            "clip_s": round(length / RATE, 1),
            "width": frames[0].shape[1],
            "height": frames[0].shape[0],
            "encode_ms_median": round(statistics.median(walls) * 1000, 1),
            "encode_ms_max": round(max(walls) * 1000, 1),
            "cpu_ms_median": round(statistics.median(cpus) * 1000, 1),
            "bytes_median": int(statistics.median(sizes)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames timed per size")
    parser.add_argument("--repeat", type=int, default=3, help="passes; the median is kept")
    parser.add_argument("--clips", type=int, default=3, help="clips encoded")
    parser.add_argument("--width", type=int, default=480, help="video.clip_width")
    parser.add_argument("--quality", type=int, default=75, help="video.clip_quality (mjpeg)")
    parser.add_argument("--seconds", type=float, default=120.0, help="of each still scene")
    parser.add_argument(
        "--scenes", nargs="+", choices=sorted(SCENES), default=list(SCENES), help="still scenes"
    )
    parser.add_argument(
        "--only", choices=("frame", "still", "clip"), help="one part of the bench, not all"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # video.opencv_threads, as the service sets it
    figures: dict[str, object] = {}
    if args.only in (None, "frame"):
        frame_part(args, figures)
    if args.only in (None, "still"):
        still_part(args, figures)
    if args.only in (None, "clip"):
        clip_part(args, figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def still_part(args: argparse.Namespace, figures: dict[str, object]) -> None:
    for name in args.scenes:
        f = still_costs(name, args)
        figures[f"still_{name.replace(' ', '_').replace('+', '_')}"] = f
        a, b = f["pre_roll_ms_every_frame_spread"], f["pre_roll_ms_still_skipped_spread"]
        print(
            f"{name} 1280x720, {f['frames']} frames: still {f['still_share']:.0%}, reused "
            f"{f['reused_share']:.0%}; pre-roll {f['pre_roll_ms_every_frame']:.3f} → "
            f"{f['pre_roll_ms_still_skipped']:.3f} ms/frame (passes {a[0]:.3f}–{a[1]:.3f} / "
            f"{b[0]:.3f}–{b[1]:.3f}); {f['raises_clips']} clips of "
            f"{f['clip_frames_still_skipped']} frames, {f['clip_distinct_frames_every_frame']} "
            f"→ {f['clip_distinct_frames_still_skipped']} distinct, MJPEG "
            f"{f['encode_cpu_ms_per_clip_every_frame']:.1f} → "
            f"{f['encode_cpu_ms_per_clip_still_skipped']:.1f} ms CPU a clip; clips in all "
            f"{f['clips_ms_per_frame_every_frame']:.3f} → "
            f"{f['clips_ms_per_frame_still_skipped']:.3f} ms per analysed frame; a clip at "
            f"mid-scene: {f['mid_clip_frames']} frames, {f['mid_clip_distinct_frames_every_frame']}"
            f" → {f['mid_clip_distinct_frames_still_skipped']} distinct, MJPEG "
            f"{f['mid_clip_encode_cpu_ms_every_frame']:.1f} → "
            f"{f['mid_clip_encode_cpu_ms_still_skipped']:.1f} ms CPU"
        )


def frame_part(args: argparse.Namespace, figures: dict[str, object]) -> None:
    for width, height in ((640, 360), (1280, 720)):
        f = frame_costs(width, height, args)
        figures[f"frame_{width}x{height}"] = f
        print(
            f"{width}x{height}: detectors {f['detectors_ms']:.2f} ms/frame, pre-roll "
            f"{f['pre_roll_ms']:.3f} ms/frame after them ({f['pre_roll_share_of_detectors']:.1%}"
            f"; {f['pre_roll_cold_ms']:.3f} ms on frames not in the cache; INTER_LINEAR "
            f"would be {f['inter_linear_resize_ms']:.3f} ms, INTER_AREA "
            f"{f['inter_area_resize_ms']:.2f} ms), ring {f['ring_frames']} frames = "
            f"{f['ring_mib']} MiB per camera"
        )


def clip_part(args: argparse.Namespace, figures: dict[str, object]) -> None:
    clips = clip_costs(args)
    figures["clip"] = clips
    labels = {
        "mjpeg": f"Motion-JPEG AVI (q{args.quality})",
        "opencv_mjpg": "OpenCV MJPG writer",
        "webm": "WebM VP8",
    }
    for name, c in clips.items():
        print(
            f"clip: {c['frames_per_clip']} frames ({c['clip_s']} s) at {c['width']}x{c['height']}"
            f" → {labels[name]} in {c['encode_ms_median']:.1f} ms (max {c['encode_ms_max']:.1f}"
            f" ms, CPU {c['cpu_ms_median']:.1f} ms), {c['bytes_median'] / 1024:.0f} KiB"
        )


if __name__ == "__main__":
    main()
