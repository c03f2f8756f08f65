"""One camera's video detectors together: what a capture worker calls for each sampled frame.

::

    detectors = CameraDetectors.for_device(device, VideoConfig())   # once per camera
    state = detectors.initial_state()
    state, hits = detectors.on_frame(frame, state, ts)   # each sampled frame (BGR or grey uint8)
    state, hits = detectors.on_no_frame(state, ts)       # a read failed / timed out, or a tick
    state = detectors.reset(state)                       # forget pixels, keep open conditions

``ts`` is the capture time in epoch seconds (the worker's clock; frames in order). Per frame:
the plane is prepared once (:func:`~detectors.video.frames.prepare`), camera health judges it,
motion finds boxes, :func:`~detectors.video.zones.stand` keeps the feet of figures whose lower
part faded, and the zones turn boxes into conditions. While the picture is unusable
(covered, frozen or the camera unreachable) open zone conditions are closed and no new ones
are raised; motion keeps learning so that it recalibrates on the picture's return. While
motion restarts its background after a global change (the frames it cannot look at), open
zone conditions are held as they are (:meth:`~detectors.video.zones.ZoneDetector.hold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Hit
from detectors.video.camera_health import CameraHealth, HealthConfig, HealthState
from detectors.video.frames import PLANE_HEIGHT, Raster, prepare
from detectors.video.motion import Box, MotionConfig, MotionDetector, MotionState
from detectors.video.zones import Figure, ZoneConfig, ZoneDetector, ZoneState, named_zones, stand
from devices.registry import Device, FramePolygon

Hits = tuple[Hit, ...]
_BLINDING = frozenset({"covered", "frozen", "unreachable"})


class VideoConfig(BaseModel):
    """All video detectors of a camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plane_height: int = Field(
        PLANE_HEIGHT, ge=60, le=720,
        description="Rows of the luma plane the detectors work on (width follows the aspect).",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion.")
    zones: ZoneConfig = Field(default_factory=ZoneConfig, description="Zones and loitering.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Camera health.")


@dataclass(frozen=True, slots=True, eq=False)
class CameraState:
    motion: MotionState
    zones: ZoneState
    health: HealthState
    figures: tuple[Figure, ...] = ()  # the boxes of the last frame as the zones judged them


class CameraDetectors:
    """Motion, zones and health of one camera; stateless itself (the state is passed in)."""

    def __init__(
        self,
        device_id: str,
        config: VideoConfig | None = None,
        zones: Sequence[FramePolygon] = (),
        masks: Sequence[FramePolygon] = (),
    ) -> None:
        self.device_id = device_id
        self.config = config = config or VideoConfig()
        self.motion = MotionDetector(config.motion)
        self.zones = ZoneDetector(device_id, named_zones(zones), config.zones)
        self.health = CameraHealth(device_id, config.health)
        self._masks = Raster(masks)

    @classmethod
    def for_device(cls, device: Device, config: VideoConfig | None = None) -> CameraDetectors:
        return cls(device.device_id, config, device.zones, device.masks)

    def initial_state(self) -> CameraState:
        return CameraState(self.motion.initial_state(), self.zones.initial_state(),
                           self.health.initial_state())

    def reset(self, state: CameraState) -> CameraState:
        """Forget the pictures (backgrounds, references) but keep open conditions and timers,
        so that what is raised still clears."""
        health = replace(state.health, prev=None, view_ref=None, focus_ref=None, view_at=None,
                         still_since=None, calm=0, seen_since=None, last_check=None,
                         average=None)
        return CameraState(self.motion.initial_state(), state.zones, health)

    def on_frame(
        self, frame: np.ndarray, state: CameraState, ts: float
    ) -> tuple[CameraState, Hits]:
        plane = prepare(frame, self.config.plane_height, self._masks)
        hits: list[Hit] = []
        health = state.health
        if self.config.health.enabled:
            health, found = self.health.on_frame(plane, health, ts)
            hits.extend(found)
        blank = plane.spread < self.config.health.blank_contrast
        blind = blank or bool(health.active() & _BLINDING)
        motion, boxes = state.motion, cast(tuple[Box, ...], ())
        if self.config.motion.enabled:
            motion, boxes = self.motion.detect(plane, motion, ts)
        zones, figures = state.zones, state.figures
        if self.config.zones.enabled:
            if blind:
                zones, found = self.zones.clear_all(zones, ts, "picture_lost")
                figures = ()
            elif not motion.looked:
                zones, found = self.zones.hold(zones), ()
                figures = ()
            else:
                boxes, figures = stand(boxes, figures, ts, self.config.zones, plane.shape[0])
                zones, found = self.zones.on_boxes(boxes, plane, zones, ts)
            hits.extend(found)
        return CameraState(motion, zones, health, figures), tuple(hits)

    def on_no_frame(self, state: CameraState, ts: float) -> tuple[CameraState, Hits]:
        if not self.config.health.enabled:
            return state, ()
        health, hits = self.health.on_no_frame(state.health, ts)
        zones = state.zones
        if "unreachable" in health.active():
            zones, cleared = self.zones.clear_all(zones, ts, "unreachable")
            hits = hits + cleared
        return CameraState(state.motion, zones, health, state.figures), hits
