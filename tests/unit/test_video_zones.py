"""Zone intrusion, loitering and whole-picture motion from motion boxes, time moved by the test."""

from __future__ import annotations

import msgspec
import numpy as np

from detectors.base import Hit
from detectors.video.frames import prepare
from detectors.video.motion import Box
from detectors.video.zones import Figure, ZoneConfig, ZoneDetector, ZoneState, named_zones, stand
from devices.registry import FramePolygon

PLANE = prepare(np.zeros((360, 640, 3), np.uint8))  # 320×180
LOWER_LEFT = FramePolygon(((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))
RIGHT = FramePolygon(((0.6, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0)))


def _person(x: int, foot: int = 150) -> Box:
    return Box(x, foot - 40, x + 14, foot, 400)


def _feed(detector: ZoneDetector, frames: list[list[Box]], t0: float = 0.0, dt: float = 0.2,
          state: ZoneState | None = None) -> tuple[ZoneState, list[Hit]]:
    state = detector.initial_state() if state is None else state
    hits: list[Hit] = []
    for i, boxes in enumerate(frames):
        state, found = detector.on_boxes(boxes, PLANE, state, t0 + i * dt)
        hits.extend(found)
    return state, hits


def test_persisting_presence_raises_once_and_clears_after_leaving() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT, RIGHT]))
    walk = [[_person(20 + 4 * i)] for i in range(20)]  # within the left zone
    _, hits = _feed(detector, walk + [[]] * 12)
    assert [(h.phase, h.type, h.metric) for h in hits] == [
        ("raised", "zone_intrusion", "zone1"), ("cleared", "zone_intrusion", "zone1")]
    raised, cleared = hits
    assert raised.ts == 0.4  # the third frame
    assert raised.condition_key == "CAM-1/video_zone/intrusion/zone1"
    assert raised.category == "video" and raised.severity == "orange"
    assert raised.evidence["zone"] == "zone1" and raised.evidence["first_seen"] == 0.0
    assert len(raised.evidence["box"]) == 4 and raised.evidence["box_px"][3] == 300
    assert cleared.evidence["reason"] == "left"
    msgspec.json.encode(hits)  # evidence is plain JSON


def test_two_frames_are_not_enough_and_boxes_must_carry_on() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]))
    _, hits = _feed(detector, [[_person(20)], [_person(24)], [], [_person(30)], []])
    assert hits == []
    # flicker at random places (rain, insects): never the same thing three frames running
    jumps = [[_person(x)] for x in (10, 90, 30, 120, 50, 5, 100, 40)]
    _, hits = _feed(detector, jumps)
    assert hits == []


def test_the_foot_point_decides() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]))
    above = [[_person(20 + 2 * i, foot=85)] for i in range(6)]  # body over the zone, feet not
    assert _feed(detector, above)[1] == []
    overlap = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]),
                           ZoneConfig(anchor="overlap", min_overlap=0.2))
    tall = [[Box(20 + 2 * i, 60, 34 + 2 * i, 110, 400)] for i in range(6)]
    assert [h.phase for h in _feed(overlap, tall)[1]] == ["raised"]


def test_loitering_after_the_dwell_time() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]), ZoneConfig(dwell_s=20))
    stay = [[_person(40 + (i % 3))] for i in range(125)]  # 25 s at 5 fps, fidgeting
    state, hits = _feed(detector, stay + [[]] * 10)
    assert [(h.type, h.phase, round(h.ts, 1)) for h in hits] == [
        ("zone_intrusion", "raised", 0.4), ("loitering", "raised", 20.0),
        ("loitering", "cleared", 26.8), ("zone_intrusion", "cleared", 26.8)]
    assert hits[1].condition_key == "CAM-1/video_zone/loitering/zone1"
    assert state == detector.initial_state()


def test_a_short_gap_does_not_end_the_presence() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]), ZoneConfig(clear_frames=10))
    frames = [[_person(30 + 2 * i)] for i in range(10)] + [[]] * 5
    frames += [[_person(50 + 2 * i)] for i in range(5)] + [[]] * 10
    _, hits = _feed(detector, frames)
    assert [h.phase for h in hits] == ["raised", "cleared"]


def test_a_camera_without_zones_reports_motion() -> None:
    detector = ZoneDetector("CAM-9", ())
    _, hits = _feed(detector, [[_person(200 + 4 * i, foot=60)] for i in range(5)])
    assert [(h.type, h.metric, h.condition_key) for h in hits] == [
        ("motion", "frame", "CAM-9/video_zone/motion/frame")]
    quiet = ZoneDetector("CAM-9", (), ZoneConfig(motion_without_zones=False))
    assert _feed(quiet, [[_person(200 + 4 * i)] for i in range(5)])[1] == []


def test_clear_all_closes_what_is_open() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT, RIGHT]))
    state, hits = _feed(detector, [[_person(20 + 2 * i)] for i in range(4)])
    assert len(hits) == 1
    state, cleared = detector.clear_all(state, 9.0, "unreachable")
    assert [(h.phase, h.metric, h.evidence["reason"]) for h in cleared] == [
        ("cleared", "zone1", "unreachable")]
    assert detector.clear_all(state, 10.0, "unreachable")[1] == ()


def _stand_all(frames: list[list[Box]], cfg: ZoneConfig | None = None,
               dt: float = 0.2) -> list[tuple[Box, ...]]:
    cfg = cfg or ZoneConfig()
    figures: tuple[Figure, ...] = ()
    out = []
    for i, boxes in enumerate(frames):
        judged, figures = stand(boxes, figures, i * dt, cfg, 180)
        out.append(judged)
    return out


def test_a_figure_whose_legs_fade_keeps_standing_where_it_stood() -> None:
    whole = [[Box(40 + 2 * i, 90, 60 + 2 * i, 150, 800)] for i in range(3)]
    legless = [[Box(46 + 2 * i, 90, 66 + 2 * i, 122, 450)] for i in range(10)]
    judged = _stand_all(whole + legless)
    assert all(b[0].y1 == 150 for b in judged)  # the foot stays where the track reached
    assert judged[-1][0].x0 == 64 and judged[-1][0].y0 == 90  # the rest is the box's own
    off = _stand_all(whole + legless, ZoneConfig(keep_height_s=None))
    assert off[-1][0].y1 == 122


def test_one_low_frame_or_a_few_pixels_are_not_kept() -> None:
    merged = [[Box(40, 90, 60, 122, 450)], [Box(41, 90, 61, 175, 900)]]  # a beam below, once
    later = [[Box(42 + i, 90, 62 + i, 122, 450)] for i in range(5)]
    assert all(b[0].y1 == 122 for b in _stand_all(merged + later)[2:])
    blur = [[Box(40, 90, 60, 150, 800)], [Box(40, 90, 60, 151, 800)],
            [Box(41, 90, 61, 146, 780)]]  # 10 % shorter: only the blur
    assert _stand_all(blur)[-1][0].y1 == 146


def test_a_walker_keeps_the_bottom_for_keep_height_s_only() -> None:
    whole = [[Box(20, 90, 40, 150, 800)], [Box(24, 90, 44, 150, 800)]]
    walking = [[Box(28 + 4 * i, 90, 48 + 4 * i, 122, 450)] for i in range(40)]  # 8 s
    judged = _stand_all(whole + walking, ZoneConfig(keep_height_s=2.0))
    assert judged[8][0].y1 == 150  # 1.6 s on
    assert judged[-1][0].y1 == 122  # long gone from where its feet were seen
    standing = [[Box(24 + i % 2, 90, 44 + i % 2, 122, 450)] for i in range(40)]
    judged = _stand_all(whole + standing, ZoneConfig(keep_height_s=2.0))
    assert judged[-1][0].y1 == 150  # still in place: still standing there


def test_a_figure_walking_farther_than_half_its_width_a_frame_keeps_its_track() -> None:
    whole = [[Box(10 * i, 90, 20 + 10 * i, 150, 800)] for i in range(3)]  # 10 px a frame
    legless = [[Box(33 + 10 * i, 90, 50 + 10 * i, 122, 450)] for i in range(6)]  # 7 px over
    judged = _stand_all(whole + legless)
    assert all(b[0].y1 == 150 for b in judged)  # its pace allowed for: still the same column
    jumped = [[Box(70, 90, 87, 122, 450)]]  # as far again the other way: someone else
    assert _stand_all(whole + jumped)[-1][0].y1 == 122


def test_a_box_over_the_last_one_carries_the_presence_on_whatever_its_size() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT]))
    small = [[Box(30, 130, 38, 150, 120)] for _ in range(4)]  # only the legs showed
    whole = [[Box(26, 90, 46, 152, 1000)] for _ in range(15)]  # then the whole body, 8× more
    _, hits = _feed(detector, small + whole)
    assert [h.phase for h in hits] == ["raised"]  # one presence, not cleared in between


def test_hold_keeps_what_is_open_and_restarts_what_is_building() -> None:
    detector = ZoneDetector("CAM-1", named_zones([LOWER_LEFT, RIGHT]))
    state, _ = _feed(detector, [[_person(20 + 2 * i)] for i in range(4)])
    state, _ = _feed(detector, [[_person(28), Box(250, 100, 264, 140, 400)]], t0=0.8,
                     state=state)
    assert state[0].active and not state[1].active and state[1].streak == 1
    held = detector.hold(state)
    assert held[0] == state[0]  # open: its absence does not grow
    assert held[1] == detector.initial_state()[1]  # building: starts over
    # many frames held (a restart) do not clear it; frames without a box do
    for _ in range(20):
        held = detector.hold(held)
    assert held[0].active
    _, cleared = _feed(detector, [[]] * 10, t0=10.0, state=held)
    assert [h.phase for h in cleared] == ["cleared"]
