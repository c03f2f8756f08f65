"""The synthetic camera scenes: deterministic pictures and their ground truth."""

from __future__ import annotations

import numpy as np

from devices.registry import FramePolygon
from simulators.scenes import (
    Cover,
    Defocus,
    Drop,
    Freeze,
    Lights,
    Scene,
    SceneSpec,
    Turn,
    Walk,
    demo,
)

ZONE = FramePolygon(((0.3, 0.62), (0.8, 0.62), (0.85, 0.95), (0.25, 0.95)))


def test_frames_are_deterministic_bgr_pictures() -> None:
    spec = SceneSpec("s", seed=5, duration=20, events=(Walk(1, ((-0.1, 0.8), (1.1, 0.8))),))
    a, b = Scene(spec), Scene(spec)
    f = a.frame(3.2)
    assert f.shape == (360, 640, 3) and f.dtype == np.uint8
    assert np.array_equal(f, b.frame(3.2))
    assert np.array_equal(f, a.frame(3.2))
    assert not np.array_equal(f, a.frame(3.4))  # sensor noise, the walker, the clock
    assert float(f.std()) > 20  # textured, for focus and view measures
    hd = Scene(SceneSpec("hd", seed=5, duration=5, width=1280, height=720))
    assert hd.frame(1.0).shape == (720, 1280, 3)


def test_a_walk_through_the_zone_is_an_intrusion() -> None:
    spec = SceneSpec("w", seed=1, duration=40, zones=(ZONE,),
                     events=(Walk(2, ((-0.1, 0.8), (1.1, 0.8)), speed=0.1),))
    (truth,) = Scene(spec).truth
    assert (truth.kind, truth.key, truth.required) == ("zone_intrusion", "zone1", True)
    assert 4.0 < truth.start < 6.5 and 9.5 < truth.end < 12.5  # x ≈ 0.25 … 0.85 at 0.1/s


def test_a_pause_in_the_zone_is_loitering() -> None:
    spec = SceneSpec("l", seed=1, duration=80, zones=(ZONE,), dwell_s=20,
                     events=(Walk(2, ((-0.1, 0.8), (0.5, 0.8), (1.1, 0.8)), pauses=(0, 30)),))
    kinds = {t.kind: t for t in Scene(spec).truth}
    assert kinds["loitering"].start == kinds["zone_intrusion"].start + 20
    assert kinds["loitering"].required


def test_faults_and_their_truth() -> None:
    spec = SceneSpec("f", seed=2, duration=100, events=(
        Cover(10, 20), Freeze(30, 40), Defocus(50, 60), Turn(70, 80), Drop(85, 95)))
    scene = Scene(spec)
    faults = [(t.key, t.start, t.end) for t in scene.truth if t.kind == "camera_fault"]
    assert faults == [("covered", 10, 20), ("frozen", 30, 40), ("blurred", 50, 60),
                      ("moved", 70, 80), ("unreachable", 85, 95)]
    assert np.array_equal(scene.frame(31.0), scene.frame(39.8))  # frozen: bit for bit
    assert float(scene.frame(15.0).std()) < 0.3 * float(scene.frame(5.0).std())  # covered
    assert scene.pan(75.0) > 0.1 and scene.pan(90.0) == 0.0
    assert scene.online(84.8) and not scene.online(85.0) and scene.online(95.0)


def test_nuisances_are_reported_as_such() -> None:
    spec = SceneSpec("n", seed=2, duration=30, brightness=0.4,
                     events=(Lights(5, True), Lights(15, False)))
    scene = Scene(spec)
    assert [(t.kind, t.key, t.is_event) for t in scene.truth] == [
        ("lights", "on", False), ("lights", "off", False)]
    lit, dark = scene.frame(10.0).astype(float), scene.frame(3.0).astype(float)
    assert lit.mean() > dark.mean() + 10


def test_demo_scenes_loop_for_the_rtsp_simulator() -> None:
    scene = demo("cam-004", 320, 180, 3)
    assert scene.frame(0.0).shape == (180, 320, 3)
    assert scene.spec.loop and scene.duration == 120
    assert any(t.kind == "camera_fault" for t in scene.truth)
    assert scene.online(64.0) == scene.online(184.0)
    one, two = scene.frame(10.0).astype(int), scene.frame(130.0).astype(int)
    assert np.abs(one - two)[40:].max() == 0  # the same picture a turn later (but the clock)
