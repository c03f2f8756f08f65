"""The camera simulator's parts that need no GStreamer: outage plans, the control protocol,
and the default picture with its time stamp."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from simulators.rtsp_control import (
    CameraSimStatus,
    Command,
    ControlError,
    DropMode,
    OutagePlan,
    mount_name,
)
from simulators.rtsp_pattern import MovingBox, read_stamp, write_stamp


def test_mount_names_match_the_simulated_county() -> None:
    assert mount_name(1) == "cam-001" and mount_name(42) == "cam-042"


@pytest.mark.parametrize(
    ("text", "plan"),
    [
        ("cam-002@30+10", OutagePlan("cam-002", 30.0, 10.0)),
        ("cam-001@20+5/60:stall", OutagePlan("cam-001", 20.0, 5.0, 60.0, DropMode.STALL)),
        ("cam-003@0.5+1.5:refuse", OutagePlan("cam-003", 0.5, 1.5)),
    ],
)
def test_outage_plans_parse_and_print_back(text: str, plan: OutagePlan) -> None:
    assert OutagePlan.parse(text) == plan
    assert OutagePlan.parse(str(plan)) == plan


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("cam-002", "is not NAME@START"),
        ("cam-002@30+0", "duration must be positive"),
        ("cam-002@30+10/5", "EVERY must be longer"),
        ("cam-002@30+10:explode", "mode must be"),
    ],
)
def test_bad_outage_plans_say_why(text: str, why: str) -> None:
    with pytest.raises(ControlError, match=why):
        OutagePlan.parse(text)


def test_commands_round_trip_and_are_checked() -> None:
    command = Command(7, "drop", "cam-001", 2.5, DropMode.STALL)
    assert Command.from_json(command.to_json()) == command
    assert Command.from_json({"id": 1, "op": "status"}).camera is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"op": "drop"}, "integer id"),
        ({"id": 1, "op": "explode"}, "unknown op"),
        ({"id": 1, "op": "drop"}, "needs a camera"),
        ({"id": 1, "op": "drop", "camera": "c", "seconds": -1}, "positive"),
        ({"id": 1, "op": "drop", "camera": "c", "mode": "melt"}, "refuse or stall"),
    ]
    for bad, why in cases:
        with pytest.raises(ControlError, match=why):
            Command.from_json(bad)


def test_status_round_trips() -> None:
    status = CameraSimStatus("cam-001", "rtsp://127.0.0.1:1/cam-001", True, False, 2, 150)
    assert CameraSimStatus.from_json(status.to_json()) == status


def test_moving_box_is_deterministic_and_moves() -> None:
    a, b = MovingBox(320, 180, seed=3), MovingBox(320, 180, seed=3)
    assert a.frame(1.25).shape == (180, 320, 3) and a.frame(1.25).dtype == np.uint8
    assert np.array_equal(a.frame(1.25), b.frame(1.25))
    assert a.box_at(0.0)[0] != a.box_at(1.0)[0]
    assert a.box_at(0.0) == a.box_at(2 * a.period_s)  # there and back


@pytest.mark.parametrize("value", [0, 1, 4711, 2**31 + 12345, 2**32 - 1])
def test_stamp_survives_jpeg(value: int) -> None:
    image = MovingBox(640, 360, stamp=False).frame(0.0)
    write_stamp(image, value)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert decoded is not None and read_stamp(decoded) == value


def test_the_pattern_stamps_scene_time_in_ms() -> None:
    assert read_stamp(MovingBox(320, 180).frame(12.345)) == 12345


def test_tiny_pictures_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        MovingBox(32, 32)
