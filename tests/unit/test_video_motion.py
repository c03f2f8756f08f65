"""Motion on synthetic luma planes: what moves is found, light and noise are not."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from detectors.video import regions
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


def test_a_region_that_walked_on_from_a_box_is_moving_on_one_standing_is_not() -> None:
    detector = MotionDetector()
    dense = np.full((40, 14), 255, np.uint8)
    r = regions.Region(30, 60, 44, 100, 560.0)
    walked = (Box(20, 60, 34, 100, 560),)  # last frame 10 px to the left
    assert detector._moving_on(r, dense, walked)
    assert not detector._moving_on(r, dense, ())  # nothing there before: a lamp came on
    assert not detector._moving_on(r, dense, (Box(31, 60, 45, 100, 560),))  # standing
    assert not detector._moving_on(r, dense, (Box(90, 60, 104, 100, 560),))  # elsewhere
    assert not detector._moving_on(r, dense, (Box(24, 70, 30, 90, 100),))  # far smaller
    sparse = np.zeros((40, 14), np.uint8)
    sparse[::4, ::2] = 255  # streaks, not a body
    assert not detector._moving_on(r, sparse, walked)


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        MotionConfig(treshold=20)  # type: ignore[call-arg]  # the typo is the point
    assert MotionConfig(threshold=30).threshold == 30


def _largest(boxes: tuple[Box, ...]) -> Box | None:
    return max(boxes, key=lambda b: b.area) if boxes else None


def _lamp_off(img: np.ndarray) -> np.ndarray:
    """The lamp lighting the right part of the picture switched off."""
    light = np.where(np.arange(W) < 130, 1.0, 0.4)[None, :]
    return img * light


def test_someone_standing_through_a_switch_of_the_lights_stays_foreground() -> None:
    bg = _texture()
    frames = [(i * 0.2, bg) for i in range(10)]
    frames += [(2.0 + i * 0.2, _with_block(bg, 230 + 2 * (i % 2))) for i in range(10)]  # fidgets
    frames += [(4.0 + i * 0.2, _lamp_off(_with_block(bg, 230 + 2 * (i % 2))))
               for i in range(25)]
    detector = MotionDetector()
    state = detector.initial_state()
    found = []
    for t, img in frames:
        state, boxes = detector.detect(_plane(img, t), state, t)
        found.append(_largest(boxes))
    assert state.recalibrations == 1
    later = found[-15:]  # after the restart settled
    assert sum(b is not None and abs(b.x0 - 230) <= 4 for b in later) >= 13


def test_a_figure_learnt_while_the_background_restarted_leaves_no_lasting_ghost() -> None:
    bg = _texture() * 0.25 + 90  # pavement, not a chessboard
    frames = [(i * 0.2, bg) for i in range(10)]
    # it arrives with the switch (not seen before it) and stays through the restart
    frames += [(2.0 + i * 0.2, _lamp_off(_with_block(bg, 230, value=200))) for i in range(12)]
    frames += [(4.4 + i * 0.2, _lamp_off(bg)) for i in range(15)]  # and leaves
    detector = MotionDetector()
    state = detector.initial_state()
    found = []
    for t, img in frames:
        state, boxes = detector.detect(_plane(img, t), state, t)
        found.append(boxes)
    assert state.recalibrations == 1
    assert any(found[-15:-10])  # the place it stood differs from the background at first
    assert not any(found[-7:])  # and is learnt at once (in light's time), not over minutes


def test_a_ghost_outline_is_in_the_background_not_in_the_picture() -> None:
    bg = _texture().astype(np.float32)
    plane = _plane(bg, 0.0)
    img = MotionDetector()._smooth(plane.luma)
    ghost = MotionDetector()._smooth(_plane(_with_block(bg, 100), 0.0).luma)
    changed = np.where(np.abs(img - ghost) > 10, np.uint8(255), np.uint8(0))
    r = regions.Region(96, 56, 118, 104, float(np.count_nonzero(changed)))
    ratio = MotionConfig().ghost_edge_ratio
    assert ratio is not None
    assert regions.edge_ratio(img, ghost, changed, r) > ratio  # the block left: a ghost
    assert regions.edge_ratio(ghost, img, changed, r) < 1 / ratio  # the block came: real


def test_relit_puts_the_old_background_in_the_new_light() -> None:
    bg = _texture().astype(np.float32)
    light = (0.4 + 0.3 * np.arange(W) / W)[None, :].astype(np.float32)  # brighter to the right
    inner = regions.Region(100, 60, 130, 120, 0.0)
    patch = regions.relit(bg, bg * light, inner, 10, 0.55, 2.0)
    assert patch is not None
    want = (bg * light)[inner.slices()]
    assert float(np.abs(patch - want).mean()) < 0.02 * float(want.mean())
    turned = np.roll(bg, 40, axis=1)  # the view moved: not the same detail around
    assert regions.relit(bg, turned, inner, 10, 0.55, 2.0) is None
    assert regions.same_view(bg, bg * light, 0.55)
    assert not regions.same_view(bg, turned, 0.55)


def test_a_turned_camera_carries_nothing_through_the_restart() -> None:
    bg = _texture()
    frames = [(i * 0.2, bg) for i in range(10)]
    frames += [(2.0 + i * 0.2, _with_block(bg, 230 + 2 * (i % 2))) for i in range(10)]
    frames += [(4.0 + i * 0.2, np.roll(bg, 60, axis=1)) for i in range(25)]  # turned away
    detector = MotionDetector()
    state = detector.initial_state()
    found = []
    for t, img in frames:
        state, boxes = detector.detect(_plane(img, t), state, t)
        found.append(boxes)
    assert state.recalibrations == 1  # once: the old view is not pasted back, again and again
    assert not any(found[-15:])


def _speckled(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.where(rng.random((H, W)) < 0.02, 255, 0).astype(np.uint8)
    mask[100:150, 100:120] = 255  # one body among the specks
    return mask


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_specks_counts_the_pixels_of_small_components(seed: int) -> None:
    import cv2

    changed = _speckled(seed)
    n, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    areas = stats[1:n, cv2.CC_STAT_AREA]
    expected = int(areas[areas < 86].sum())
    assert 0 < expected < int(np.count_nonzero(changed)) - 1000  # the body is no speck
    assert regions.specks(changed, 86) == expected
    assert regions.specks(np.zeros((H, W), np.uint8), 86) == 0


def test_above_is_the_thresholded_mask_where_kept() -> None:
    rng = np.random.default_rng(4)
    delta = (rng.random((H, W)) * 20).astype(np.float32)
    keep = np.full((H, W), 255, np.uint8)
    keep[:, :100] = 0
    threshold = 25 / 3.7
    plain = regions.above(delta, threshold)
    assert plain.dtype == np.uint8
    assert np.array_equal(plain, np.where(delta > np.float32(threshold), 255, 0))
    assert np.array_equal(regions.above(delta, threshold, keep), np.where(keep > 0, plain, 0))


def test_hysteresis_grows_strong_pixels_into_touching_weak_ones_only() -> None:
    delta = np.zeros((H, W), np.float32)
    delta[50:60, 50:80] = 10.0  # weak, touching the strong one below
    delta[60:70, 50:80] = 30.0  # strong
    delta[120:130, 200:220] = 10.0  # weak, alone
    strong = regions.above(delta, 20.0)
    grown = regions.hysteresis(strong, delta, 5.0, None)
    assert grown[50:70, 50:80].all() and not grown[120:130, 200:220].any()
    nothing = np.zeros((H, W), np.uint8)
    assert not regions.hysteresis(nothing, delta, 5.0, None).any()


@pytest.mark.parametrize("n", [2, 5, 6, 9])
def test_pixel_median_is_numpys(n: int) -> None:
    from detectors.video.motion import _pixel_median

    rng = np.random.default_rng(n)
    planes = tuple((rng.integers(0, 6, (H, W)) * 37.5).astype(np.float32) for _ in range(n))
    expected = np.median(np.stack(planes), axis=0).astype(np.float32)
    got = _pixel_median(planes)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert all(got is not p for p in planes)
