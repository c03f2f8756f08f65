"""Camera health on synthetic planes: each fault raised after its delay and restored."""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest

from detectors.base import Hit
from detectors.video.camera_health import CameraHealth, HealthConfig, HealthState, _phase_shift
from detectors.video.frames import prepare

H, W = 180, 320
FPS = 5.0


def _scene(seed: int = 3, width: int = W) -> np.ndarray:
    """A textured picture (blocks of several sizes), float."""
    rng = np.random.default_rng(seed)
    out = np.zeros((H, width))
    for size in (24, 8, 3):
        small = rng.uniform(-1, 1, (H // size + 1, width // size + 1))
        out += 30 * np.kron(small, np.ones((size, size)))[:H, :width]
    return out + 120


def _frame(img: np.ndarray, t: float, noise: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(int(t * 1000) + 7)
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


class Camera:
    """Feeds a health detector at 5 fps and keeps what it said."""

    def __init__(self, cfg: HealthConfig | None = None) -> None:
        self.health = CameraHealth("CAM-1", cfg)
        self.state = HealthState()
        self.t = 0.0
        self.hits: list[Hit] = []

    def show(self, seconds: float, picture: object) -> None:
        """``picture``: a frame, or a function of t giving one, or None for no frame."""
        for _ in range(round(seconds * FPS)):
            if picture is None:
                self.state, hits = self.health.on_no_frame(self.state, self.t)
            else:
                frame = picture(self.t) if callable(picture) else picture
                self.state, hits = self.health.on_frame(prepare(frame, H), self.state, self.t)
            self.hits.extend(hits)
            self.t = round(self.t + 1 / FPS, 6)

    def said(self) -> list[tuple[str, str, float]]:
        return [(h.phase, h.rule, h.ts) for h in self.hits]


SCENE = _scene()


def live(t: float) -> np.ndarray:
    return _frame(SCENE, t)


def test_a_live_static_scene_is_healthy() -> None:
    cam = Camera()
    cam.show(60, live)
    assert cam.hits == []
    assert cam.state.focus_ref is not None and cam.state.live_diff is not None


def test_frozen_picture() -> None:
    cam = Camera()
    cam.show(10, live)
    still = live(10.0)
    cam.show(15, still)  # the same decoded picture again and again
    cam.show(10, live)
    (raised, cleared) = cam.hits
    assert (raised.phase, raised.rule, raised.type, raised.category) == (
        "raised", "frozen", "camera_fault", "device")
    assert raised.evidence["fault"] == "frozen"
    assert 19.9 <= raised.ts <= 20.3  # frozen from 10 s on, for frozen_after_s = 10 s
    assert cleared.phase == "cleared" and 25.0 <= cleared.ts <= 28.5
    msgspec.json.encode(cam.hits)


def test_a_camera_that_never_changed_is_not_judged_frozen() -> None:
    cam = Camera()
    cam.show(30, _frame(SCENE, 0.0, noise=0))
    assert cam.hits == []


def test_covered_lens_raises_and_clears() -> None:
    cam = Camera()
    cam.show(10, live)
    cam.show(10, lambda t: _frame(np.full((H, W), 18.0), t))  # a hand on the lens
    cam.show(10, live)
    assert cam.said()[0][:2] == ("raised", "covered")
    assert 14.9 <= cam.said()[0][2] <= 15.3
    assert cam.said()[1][:2] == ("cleared", "covered")
    assert all(rule == "covered" for _, rule, _ in cam.said())


def test_lost_focus_raises_and_clears() -> None:
    cam = Camera()
    cam.show(15, live)
    blurred = cv2.GaussianBlur(SCENE, (0, 0), 3)
    cam.show(20, lambda t: _frame(blurred, t))
    cam.show(10, live)
    assert [(p, r) for p, r, _ in cam.said()] == [("raised", "blurred"), ("cleared", "blurred")]
    assert cam.hits[0].evidence["focus_ratio"] < 0.5


def test_camera_turned_raises_moved_and_turned_back_clears() -> None:
    wide = _scene(width=W + 120)
    cam = Camera()
    cam.show(15, lambda t: _frame(wide[:, :W], t))
    cam.show(20, lambda t: _frame(wide[:, 80:80 + W], t))  # panned by a quarter
    cam.show(10, lambda t: _frame(wide[:, :W], t))
    assert [(p, r) for p, r, _ in cam.said()] == [("raised", "moved"), ("cleared", "moved")]
    assert abs(cam.hits[0].evidence["shift_x"] + 80 / W) < 0.02  # the content moved left


def test_no_frames_is_unreachable_until_a_frame_comes() -> None:
    cam = Camera()
    cam.show(20, None)  # never reached at all
    cam.show(5, live)
    cam.show(10, None)
    cam.show(16, None)
    cam.show(1, live)
    assert [(p, r) for p, r, _ in cam.said()] == [
        ("raised", "unreachable"), ("cleared", "unreachable"),
        ("raised", "unreachable"), ("cleared", "unreachable")]
    assert cam.said()[0][2] == 15.0
    assert cam.hits[2].evidence["no_frame_s"] == pytest.approx(15.0, abs=0.3)


def test_faults_are_configurable() -> None:
    cam = Camera(HealthConfig(unreachable_after_s=3))
    cam.show(4, None)
    assert cam.said() == [("raised", "unreachable", 3.0)]
    assert HealthConfig(covered_after_s=1).covered_after_s == 1


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (7, 0), (-5, 3), (12, -8)])
def test_phase_shift_finds_the_shift(dx: int, dy: int) -> None:
    img = _scene()[:90, :160].astype(np.float32)
    moved = np.roll(img, (dy, dx), axis=(0, 1))
    win = cv2.createHanningWindow((160, 90), cv2.CV_32F)
    (sx, sy), response = _phase_shift((img - img.mean()) * win, (moved - moved.mean()) * win)
    assert abs(sx - dx) < 0.5 and abs(sy - dy) < 0.5
    assert response > 0.2


def test_phase_shift_with_the_reference_spectrum_kept_is_the_same() -> None:
    img = _scene()[:90, :160].astype(np.float32)
    moved = np.roll(img, (3, -6), axis=(0, 1))
    spectrum = np.conj(np.fft.rfft2(img))
    assert _phase_shift(img, moved, spectrum) == _phase_shift(img, moved)
