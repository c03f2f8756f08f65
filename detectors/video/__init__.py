"""Video detectors: pure functions of sampled camera frames, their state and the time.

They emit the same :class:`~detectors.base.Hit` values as the sensor detectors:
``zone_intrusion``, ``loitering`` and ``motion`` (category ``video``) and ``camera_fault``
(category ``device``, the fault in ``evidence["fault"]``). What a capture worker calls::

    from detectors.video import CameraDetectors, VideoConfig

    detectors = CameraDetectors.for_device(device, VideoConfig())
    state = detectors.initial_state()
    state, hits = detectors.on_frame(frame_bgr, state, ts)   # every sampled frame
    state, hits = detectors.on_no_frame(state, ts)           # read failed / no frame yet

Modules: :mod:`~detectors.video.frames` (one luma plane per frame, zones and masks
rasterised), :mod:`~detectors.video.motion`, :mod:`~detectors.video.zones`,
:mod:`~detectors.video.camera_health`, and :mod:`~detectors.video.pipeline` which runs them.
"""

from __future__ import annotations

from detectors.video.camera_health import FAULTS, CameraHealth, HealthConfig, HealthState
from detectors.video.frames import PLANE_HEIGHT, Plane, Raster, prepare
from detectors.video.motion import Box, MotionConfig, MotionDetector, MotionState
from detectors.video.pipeline import CameraDetectors, CameraState, VideoConfig
from detectors.video.zones import Zone, ZoneConfig, ZoneDetector, ZoneState, named_zones

__all__ = [
    "FAULTS",
    "PLANE_HEIGHT",
    "Box",
    "CameraDetectors",
    "CameraHealth",
    "CameraState",
    "HealthConfig",
    "HealthState",
    "MotionConfig",
    "MotionDetector",
    "MotionState",
    "Plane",
    "Raster",
    "VideoConfig",
    "Zone",
    "ZoneConfig",
    "ZoneDetector",
    "ZoneState",
    "named_zones",
    "prepare",
]
