"""What a snapshot shows a grid worker: the camera's zones and the box that raised the hit.

Drawn on a copy of the frame (frames are shared read-only with the API's latest picture),
so that whoever opens the evidence sees at once where and what was seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from devices.registry import FramePolygon

ZONE_BGR = (0, 215, 255)  # amber
BOX_BGR = (0, 0, 255)  # red


def annotate(
    image: np.ndarray,
    zones: Sequence[FramePolygon],
    boxes_px: Iterable[Sequence[float]],
) -> np.ndarray:
    """``image`` (H×W×3 BGR) with ``zones`` (0–1 frame coordinates) outlined and each box
    (``x0, y0, x1, y1`` in source pixels) drawn."""
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(h / 240))
    for zone in zones:
        points = np.array([[round(x * w), round(y * h)] for x, y in zone.points], np.int32)
        cv2.polylines(out, [points], isClosed=True, color=ZONE_BGR, thickness=thickness)
    for box in boxes_px:
        x0, y0, x1, y1 = (round(v) for v in box[:4])
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_BGR, thickness + 1)
    return out
