"""What clips around video raises cost: the pre-roll every analysed frame pays, and the
encoding every clip pays.

In one process, on frames of the synthetic scenes (a walker in the rain at night, so that
the frames are as busy as a camera's), single-threaded OpenCV as the service runs it:

* per frame: the video detectors of one camera (``CameraDetectors.on_frame``), and the
  pre-roll (downscale to ``--width`` + ring bookkeeping) right after them on the same frame
  as the service runs it, with the ratio of the two, at 640×360 and 1280×720 (and the
  pre-roll alone on frames read from memory, the worst case); also ``INTER_LINEAR``'s and
  ``INTER_AREA``'s cost for comparison (``shrink`` takes the nearest pixel from twice the
  width up);
* per clip: the encode time (wall and CPU) and size of a full clip (pre + post roll at the
  analysed rate) for each format: Motion-JPEG AVI (``video.clip_format = "mjpeg"``, at
  ``--quality``), OpenCV's own MJPG writer on the same frames for comparison, and WebM VP8;
  and the ring's memory per camera.

    .venv/bin/python bench/video_clip_cost.py
    .venv/bin/python bench/video_clip_cost.py --frames 200 --clips 5 --json bench/out/clips.json
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

import cv2
import numpy as np

# bench/ingest.py would shadow the ingest package: the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.video import VideoConfig
from detectors.video.pipeline import CameraDetectors
from devices.registry import Device
from ingest.video_clips import ClipCollector, ClipSettings, encode_mjpeg, encode_webm, shrink
from simulators.scenes import (
    DEMO_ZONE,
    OSD_MASK,
    Dusk,
    Rain,
    Scene,
    SceneSpec,
    Walk,
)  # fmt: skip

RATE = 5.0


def scene(width: int, height: int) -> Scene:
    events = (
        Walk(1, ((-0.08, 0.8), (1.08, 0.84)), 0.1),
        Rain(0, 600, 0.6),
        Dusk(0, 1.0, 0.3),
    )
    return Scene(SceneSpec("bench", 5, 600.0, events, (DEMO_ZONE,), width=width, height=height))


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
    camera = Device(
        device_id="CAM", type="camera", rtsp_url="rtsp://x", zones=(DEMO_ZONE,), masks=(OSD_MASK,)
    )
    detectors = CameraDetectors.for_device(camera, VideoConfig())
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
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # video.opencv_threads, as the service sets it
    figures: dict[str, object] = {}
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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
