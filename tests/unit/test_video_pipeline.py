"""The whole camera stack on generated scenes, fed as a capture worker feeds it (5 fps).

Each scene is one thing the field sees: a person walking into a zone, the lights switched,
dusk, rain, headlights, a covered lens, a frozen picture, lost focus, the camera turned, the
stream gone. Time is the scene's; nothing sleeps.
"""

from __future__ import annotations

from collections import Counter

import pytest

from detectors.base import Hit
from detectors.video import CameraDetectors, VideoConfig
from devices.registry import Device, FramePolygon
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

ZONE = FramePolygon(((0.3, 0.62), (0.82, 0.62), (0.9, 0.97), (0.22, 0.97)))
ACROSS = ((-0.1, 0.8), (1.1, 0.82))


def play(events: tuple[Event, ...], duration: float, *, brightness: float = 1.0,
         zones: tuple[FramePolygon, ...] = (ZONE,), seed: int = 11,
         lamp: tuple[float, float] = (0.62, 0.55), lamp_on: bool = False) -> list[Hit]:
    spec = SceneSpec("test", seed, duration, events, zones, brightness=brightness, lamp=lamp,
                     lamp_on=lamp_on)
    scene = Scene(spec)
    detectors = CameraDetectors("CAM-1", VideoConfig(), scene.zones, scene.masks)
    state = detectors.initial_state()
    hits: list[Hit] = []
    for t in scene.times(5.0):
        if scene.online(t):
            state, found = detectors.on_frame(scene.frame(t), state, t)
        else:
            state, found = detectors.on_no_frame(state, t)
        hits.extend(found)
    return hits


def raised(hits: list[Hit]) -> Counter[tuple[str, str | None]]:
    return Counter((h.type, h.rule if h.type == "camera_fault" else h.metric)
                   for h in hits if h.raised)


def test_a_walker_into_the_zone_is_one_intrusion() -> None:
    hits = play((Walk(3, ACROSS, speed=0.1),), 25)
    assert [(h.type, h.phase, h.metric) for h in hits] == [
        ("zone_intrusion", "raised", "zone1"), ("zone_intrusion", "cleared", "zone1")]
    first = hits[0]
    assert 5.0 < first.ts < 8.0  # enters at x ≈ 0.25, some 3.5 s after setting off
    assert first.evidence["zone"] == "zone1"
    assert first.condition_key == "CAM-1/video_zone/intrusion/zone1"


def test_a_loiterer_is_loitering() -> None:
    path = ((-0.1, 0.8), (0.5, 0.8), (0.52, 0.83), (1.1, 0.8))
    hits = play((Walk(2, path, speed=0.1, pauses=(0, 14, 14)),), 50)
    assert raised(hits) == {("zone_intrusion", "zone1"): 1, ("loitering", "zone1"): 1}
    assert [h.phase for h in hits if h.type == "loitering"] == ["raised", "cleared"]


@pytest.mark.parametrize("on", [True, False], ids=["lamp on", "lamp off"])
def test_someone_standing_through_a_switch_of_the_lights_keeps_loitering(on: bool) -> None:
    path = ((-0.1, 0.8), (0.5, 0.8), (0.52, 0.83), (1.1, 0.8))
    stay = Walk(2, path, speed=0.1, pauses=(0, 14, 14), shirt=(150, 90, 40))
    hits = play((stay, Lights(16, on)), 50, brightness=0.4, lamp=(0.5, 0.7), lamp_on=not on)
    assert [(h.type, h.phase) for h in hits] == [
        ("zone_intrusion", "raised"), ("loitering", "raised"), ("loitering", "cleared"),
        ("zone_intrusion", "cleared")]  # not learnt into the background by the switch
    assert hits[1].ts < 27  # 20 s after arriving at 6 s (and not after a new arrival)


def test_someone_standing_in_heavy_rain_as_a_beam_floods_the_picture_keeps_loitering() -> None:
    # the beam lights so much of the picture that the background restarts; the frames of the
    # restart are blind, not empty: the presence goes on and becomes loitering
    path = ((1.1, 0.88), (0.68, 0.88), (0.64, 0.9), (-0.1, 0.87))
    stay = Walk(2, path, speed=0.1, pauses=(0, 12, 12), shirt=(80, 160, 220),
                trousers=(80, 160, 220))
    beam = Headlights(20, 2.8, 1, 0.84, 1.2)
    for seed in (11, 31):
        hits = play((stay, Rain(0, 40, 1.8), beam), 40, brightness=0.4, seed=seed)
        kinds = [(h.type, h.phase) for h in hits]
        assert kinds[:2] == [("zone_intrusion", "raised"), ("loitering", "raised")], kinds
        assert hits[1].ts - hits[0].ts < 21  # the dwell, not a new arrival after the beam


@pytest.mark.parametrize("seed", [11, 21])
def test_a_dark_figure_stopping_under_a_lamp_in_heavy_rain_stays_foreground(seed: int) -> None:
    # its detail correlates with the lit background by chance; where it was a box the frame
    # before it is still someone, not light
    path = ((-0.1, 0.83), (0.69, 0.85), (0.66, 0.87), (1.1, 0.87))
    stay = Walk(2, path, speed=0.1, pauses=(0, 12, 12), shirt=(120, 60, 120),
                trousers=(30, 30, 30))
    hits = play((stay, Rain(0, 40, 1.4)), 40, brightness=0.37, lamp=(0.62, 0.74), seed=seed)
    assert raised(hits)[("loitering", "zone1")] == 1


def test_a_beam_sweeping_over_a_walker_does_not_hide_them() -> None:
    walker = Walk(3, ((-0.1, 0.8), (1.1, 0.81)), speed=0.17, shirt=(150, 90, 40),
                  trousers=(200, 200, 200))
    hits = play((walker, Headlights(3.6, 5.0, -1, 0.86, 1.2)), 12, brightness=0.45)
    assert [(h.type, h.phase) for h in hits] == [
        ("zone_intrusion", "raised"), ("zone_intrusion", "cleared")]
    assert hits[0].ts < 6.5  # in the zone from about 5 s, in the beam's light


@pytest.mark.parametrize("seed", [9027, 12])
def test_a_fast_walker_in_the_dark_whose_legs_fade_is_found_entering(seed: int) -> None:
    # legs near the road's colour at night: only the torso shows after the first frames, a
    # bright shirt over the kerb line looks lit window by window, and the walker moves more
    # than half its width between frames
    walker = Walk(2, ((-0.08, 0.72), (1.08, 0.665)), speed=0.179, shirt=(80, 160, 220),
                  trousers=(120, 60, 120), size=0.93)
    hits = play((walker,), 10, brightness=0.4, seed=seed, lamp=(0.61, 0.82))
    assert [(h.type, h.phase) for h in hits] == [
        ("zone_intrusion", "raised"), ("zone_intrusion", "cleared")]
    assert hits[0].ts < 5.0  # in the zone from about 4 s


def test_without_zones_a_camera_reports_motion() -> None:
    hits = play((Walk(3, ACROSS, speed=0.12),), 20, zones=())
    assert raised(hits) == {("motion", "frame"): 1}


@pytest.mark.parametrize(
    ("events", "brightness"),
    [
        pytest.param((Lights(5, True), Lights(15, False), Lights(25, True)), 0.35, id="lights"),
        pytest.param((Dusk(3, 40, 0.25),), 1.0, id="dusk"),
        pytest.param((Rain(0, 40, 1.5),), 0.5, id="rain"),
        pytest.param((Headlights(4, 3), Headlights(14, 2.5, -1, 0.8), Headlights(25, 3.5)), 0.35,
                     id="headlights"),
    ],
)
def test_nuisances_raise_nothing(events: tuple[Event, ...], brightness: float) -> None:
    assert play(events, 40, brightness=brightness) == []


def test_covered_lens_is_a_fault_until_uncovered() -> None:
    hits = play((Cover(12, 25),), 35)
    assert [(h.phase, h.rule, h.evidence["fault"]) for h in hits] == [
        ("raised", "covered", "covered"), ("cleared", "covered", "covered")]
    assert hits[0].type == "camera_fault" and hits[0].category == "device"
    assert 16 < hits[0].ts < 19 and 25 < hits[1].ts < 30


def test_frozen_picture_is_a_fault() -> None:
    hits = play((Freeze(10, 30),), 38)
    assert [(h.phase, h.rule) for h in hits] == [("raised", "frozen"), ("cleared", "frozen")]
    assert 19.5 < hits[0].ts < 21.5


def test_lost_focus_is_a_fault() -> None:
    hits = play((Defocus(10, 30),), 38)
    assert [(h.phase, h.rule) for h in hits] == [("raised", "blurred"), ("cleared", "blurred")]


def test_camera_turned_is_a_fault() -> None:
    hits = play((Turn(10, 25, 0.2),), 35)
    assert [(h.phase, h.rule) for h in hits] == [("raised", "moved"), ("cleared", "moved")]


def test_stream_dropped_is_unreachable_until_it_is_back() -> None:
    hits = play((Drop(8, 30),), 36)
    assert [(h.phase, h.rule, h.ts) for h in hits] == [
        ("raised", "unreachable", 22.8), ("cleared", "unreachable", 30.0)]  # last frame 7.8 s


def test_an_intrusion_open_when_the_stream_drops_is_closed() -> None:
    stay = Walk(2, ((-0.1, 0.8), (0.5, 0.8), (0.5, 0.82)), speed=0.1, pauses=(0, 60))
    hits = play((stay, Drop(12, 40)), 42)
    assert [(h.type, h.phase) for h in hits][:3] == [
        ("zone_intrusion", "raised"), ("camera_fault", "raised"), ("zone_intrusion", "cleared")]
    assert hits[2].evidence["reason"] == "unreachable"


def test_for_device_and_reset() -> None:
    device = Device("CAM-7", "camera", rtsp_url="rtsp://cam", zones=(ZONE,),
                    masks=(FramePolygon(((0, 0), (0.3, 0), (0.3, 0.1), (0, 0.1))),))
    detectors = CameraDetectors.for_device(device)
    assert detectors.zones.zones[0].name == "zone1"
    scene = Scene(SceneSpec("r", 3, 10, zones=(ZONE,)))
    state = detectors.initial_state()
    for t in scene.times(5.0):
        state, _ = detectors.on_frame(scene.frame(t), state, t)
    assert state.motion.background is not None and state.health.focus_ref is not None
    fresh = detectors.reset(state)
    assert fresh.motion.background is None and fresh.health.focus_ref is None
    assert fresh.zones == state.zones
