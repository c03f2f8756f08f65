"""Motion on synthetic luma planes: what moves is found, light and noise are not."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from detectors.video.frames import Plane, Raster, prepare
from detectors.video.motion import Box, MotionConfig, MotionDetector, MotionState
from devices.registry import FramePolygon

H, W = 180, 320


def _texture(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 200, (H // 6, W // 8))
    return np.kron(small, np.ones((6, 8)))  # blocks: detail at several scales


def _plane(img: np.ndarray, t: float, noise: float = 2.0, masks: Raster | None = None) -> Plane:
    rng = np.random.default_rng(int(t * 1000))
    noisy = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return prepare(noisy, H, masks)


def _run(frames: list[tuple[float, np.ndarray]], detector: MotionDetector | None = None,
         masks: Raster | None = None) -> list[tuple[float, tuple[Box, ...]]]:
    detector = detector or MotionDetector()
    state = detector.initial_state()
    out = []
    for t, img in frames:
        state, boxes = detector.detect(_plane(img, t, masks=masks), state, t)
        out.append((t, boxes))
    return out


def _with_block(bg: np.ndarray, x: int, y: int = 60, w: int = 14, h: int = 40,
                value: float = 20.0) -> np.ndarray:
    img = bg.copy()
    img[y:y + h, x:x + w] = value
    return img


def test_a_moving_figure_is_found_where_it_is() -> None:
    bg = _texture()
    frames = [(i * 0.2, bg) for i in range(10)]
    frames += [(2.0 + i * 0.2, _with_block(bg, 40 + 6 * i)) for i in range(10)]
    results = _run(frames)
    assert all(not boxes for _, boxes in results[:10])
    later = [boxes for _, boxes in results[12:]]
    assert all(len(b) >= 1 for b in later)
    last = max(results[-1][1], key=lambda b: b.area)
    assert abs(last.x0 - (40 + 6 * 9)) <= 3 and abs(last.y1 - 100) <= 3


def test_a_static_noisy_scene_has_no_motion() -> None:
    bg = _texture()
    results = _run([(i * 0.2, bg) for i in range(60)], MotionDetector())
    assert not any(boxes for _, boxes in results)


def test_lights_switched_recalibrate_instead_of_moving() -> None:
    bg = _texture()
    frames = [(i * 0.2, bg) for i in range(10)]
    frames += [(2.0 + i * 0.2, bg * 0.4) for i in range(15)]  # lights off
    frames += [(5.0 + i * 0.2, bg) for i in range(15)]  # and on
    detector = MotionDetector()
    state = detector.initial_state()
    found = []
    for t, img in frames:
        state, boxes = detector.detect(_plane(img, t), state, t)
        found.extend(boxes)
    assert not found
    assert state.recalibrations == 2


def test_dusk_fades_without_motion() -> None:
    bg = _texture()
    frames = [(i * 0.2, bg * (1 - 0.7 * min(1.0, i / 300))) for i in range(330)]
    assert not any(boxes for _, boxes in _run(frames))


def test_a_pool_of_light_is_not_motion() -> None:
    bg = _texture()
    yy, xx = np.mgrid[0:H, 0:W]
    pool = np.exp(-(((xx - 160) / 50.0) ** 2 + ((yy - 120) / 30.0) ** 2))
    frames = [(i * 0.2, bg * 0.5) for i in range(10)]
    frames += [(2.0 + i * 0.2, bg * (0.5 + 0.4 * pool * min(1.0, i / 2))) for i in range(20)]
    assert not any(boxes for _, boxes in _run(frames))


def test_masked_motion_is_ignored() -> None:
    bg = _texture()
    mask = Raster([FramePolygon(((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))])
    frames = [(i * 0.2, bg) for i in range(10)]
    frames += [(2.0 + i * 0.2, _with_block(bg, 20 + 5 * i)) for i in range(15)]
    assert not any(boxes for _, boxes in _run(frames, masks=mask))


def test_detect_is_pure_and_a_gap_restarts() -> None:
    detector = MotionDetector()
    bg = _texture()
    state = MotionState()
    for i in range(8):
        state, _ = detector.detect(_plane(bg, i * 0.2), state, i * 0.2)
    assert state.background is not None
    before = state.background.copy()
    plane = _plane(_with_block(bg, 100), 2.0)
    a, boxes_a = detector.detect(plane, state, 2.0)
    b, boxes_b = detector.detect(plane, state, 2.0)
    assert boxes_a == boxes_b
    assert np.array_equal(state.background, before)  # the input state is untouched
    assert a.background is not None and b.background is not None
    assert np.array_equal(a.background, b.background)
    restarted, boxes = detector.detect(plane, state, 60.0)  # a minute without frames
    assert boxes == () and restarted.calibrating == detector.cfg.calibration_frames


def test_box_continuity() -> None:
    a = Box(10, 10, 20, 50, 300)
    assert a.continues(Box(22, 10, 32, 50, 320), 0.5)
    assert not a.continues(Box(60, 10, 70, 50, 320), 0.5)
    assert not a.continues(Box(12, 10, 22, 50, 2000), 0.5)  # far bigger: not the same thing
    assert a.foot == (15, 49)


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        MotionConfig(treshold=20)  # type: ignore[call-arg]  # the typo is the point
    assert MotionConfig(threshold=30).threshold == 30
