"""Snapshots show the zone and the box that raised the hit, on a copy of the frame."""

from __future__ import annotations

import numpy as np

from detectors.video.annotate import BOX_BGR, ZONE_BGR, annotate
from devices.registry import FramePolygon


def test_zone_and_box_are_drawn_on_a_copy() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame.setflags(write=False)  # frames are shared read-only
    zone = FramePolygon(((0.25, 0.5), (0.75, 0.5), (0.75, 0.9), (0.25, 0.9)))
    out = annotate(frame, [zone], [[100.0, 40.0, 200.0, 120.0]])
    assert not frame.any()
    assert tuple(out[180, 400]) == ZONE_BGR  # the zone's top edge at y = 0.5 × 360
    assert tuple(out[40, 150]) == BOX_BGR  # the box's top edge
    assert not out[250, 400].any()  # inside the zone nothing is painted
