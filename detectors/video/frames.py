"""Shared preprocessing: each frame becomes one small luma plane that every video detector reads.

A frame is converted to grey, halved with ``pyrDown`` (a 5×5 Gaussian and a 2:1 subsample,
so the plane is antialiased and sensor noise averages out) until it is less than twice the
plane height, then resized with ``INTER_LINEAR`` to exactly ``height`` rows (``INTER_AREA``
costs ~10× more, docs/measured.md). When it takes two halvings or more (720p and up) the
first is a plain 2×2 mean (``resize`` to exactly half: 0.02 ms at 720p against 0.16 ms for
``pyrDown``); the Gaussian of the next level antialiases the plane. On 222 labelled clips
rendered at 720p (``bench/video_quality.py --size 1280x720``) it found 368 of 374 events
with 6 false ones, against 369 and 7 with ``pyrDown`` first. 720p → 320×180 costs ~0.25 ms,
most of it the grey conversion; 360p ~0.06 ms.
The plane's luma histogram gives the percentiles used for contrast stretching and for the
"blank picture" test, once.

Zones and masks are :class:`~devices.registry.FramePolygon` in 0–1 frame coordinates;
:class:`Raster` fills them at the plane's resolution once and keeps the result per shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

from devices.registry import FramePolygon

PLANE_HEIGHT: Final = 180
LOW_PERCENTILE: Final = 4.0
HIGH_PERCENTILE: Final = 96.0


@dataclass(frozen=True, slots=True, eq=False)
class Plane:
    """One frame as the detectors see it: a downscaled luma plane and its statistics.

    ``lo``/``hi`` are the 4th/96th luma percentiles and ``mean`` the mean luma, over the
    unmasked pixels; ``source`` is the (height, width) of the frame it came from (to map boxes
    back to frame pixels); ``mask`` (uint8, 255 = masked) the camera's masks at this size and
    ``keep`` its inverse (255 where the picture is analysed), made once per shape by
    :class:`Raster` rather than by every detector on every frame.
    """

    luma: np.ndarray
    source: tuple[int, int]
    lo: float
    hi: float
    mean: float
    mask: np.ndarray | None = None
    keep: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.keep is None:
            object.__setattr__(self, "keep", cv2.bitwise_not(self.mask))

    @property
    def visible(self) -> int:
        """Pixels not under a mask."""
        return int(self.luma.size if self.keep is None else cv2.countNonZero(self.keep))

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.luma.shape[:2]
        return h, w

    @property
    def spread(self) -> float:
        """Contrast of the picture: the 4th–96th percentile range of luma (0–255)."""
        return self.hi - self.lo

    def relative(self, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
        """A plane-pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) in 0–1 frame coordinates."""
        h, w = self.shape
        return (round(box[0] / w, 4), round(box[1] / h, 4), round(box[2] / w, 4),
                round(box[3] / h, 4))

    def to_source(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A plane-pixel box in pixels of the original frame."""
        sh, sw = self.source
        h, w = self.shape
        return (box[0] * sw // w, box[1] * sh // h, box[2] * sw // w, box[3] * sh // h)


def luma(frame: np.ndarray) -> np.ndarray:
    """The grey (luma) plane of a BGR or already grey uint8 frame."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    raise ValueError(f"expected an H×W×3 BGR or H×W grey frame, got shape {frame.shape}")


def prepare(frame: np.ndarray, height: int = PLANE_HEIGHT, masks: Raster | None = None) -> Plane:
    """Downscale ``frame`` (uint8 BGR or grey) to a luma plane ``height`` rows high; statistics
    leave out what ``masks`` cover (an OSD clock, a privacy mask, a tree)."""
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    grey = luma(frame)
    source = (int(grey.shape[0]), int(grey.shape[1]))
    if grey.shape[0] >= 4 * height:  # two halvings or more: the first is a 2×2 mean
        h, w = grey.shape[:2]
        grey = cv2.resize(grey, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_LINEAR)
    while grey.shape[0] >= 2 * height:
        grey = cv2.pyrDown(grey)
    if grey.shape[0] != height:
        width = max(1, round(grey.shape[1] * height / grey.shape[0]))
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = keep = None
    if masks and masks.polygons:
        shape = (int(grey.shape[0]), int(grey.shape[1]))
        mask, keep = masks.at(shape), masks.inverse(shape)
    lo, hi, mean = _stats(grey, keep)
    return Plane(luma=grey, source=source, lo=lo, hi=hi, mean=mean, mask=mask, keep=keep)


def _stats(grey: np.ndarray, keep: np.ndarray | None) -> tuple[float, float, float]:
    hist = cv2.calcHist([grey], [0], keep, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist)
    n = cdf[-1]
    if n <= 0:  # everything masked
        hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
        cdf = np.cumsum(hist)
        n = cdf[-1]
    lo = float(np.searchsorted(cdf, n * LOW_PERCENTILE / 100))
    hi = float(np.searchsorted(cdf, n * HIGH_PERCENTILE / 100))
    mean = float(np.dot(hist, np.arange(256)) / n)
    return lo, hi, mean


def fill(polygons: Sequence[FramePolygon], shape: tuple[int, int]) -> np.ndarray:
    """A uint8 mask of ``shape``: 255 inside any of ``polygons`` (0–1 coordinates), else 0."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    pts = [np.round(np.asarray(p.points, np.float64) * (w, h)).astype(np.int32)
           for p in polygons if len(p.points) >= 3]
    if pts:
        cv2.fillPoly(mask, pts, 255)
    mask.setflags(write=False)
    return mask


class Raster:
    """Polygons filled once per plane shape (a camera's resolution rarely changes)."""

    __slots__ = ("_cache", "_inverse", "polygons")

    def __init__(self, polygons: Sequence[FramePolygon]) -> None:
        self.polygons = tuple(polygons)
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._inverse: dict[tuple[int, int], np.ndarray] = {}

    def at(self, shape: tuple[int, int]) -> np.ndarray:
        mask = self._cache.get(shape)
        if mask is None:
            if len(self._cache) > 4:  # a camera changing resolution over and over
                self._cache.clear()
                self._inverse.clear()
            mask = self._cache[shape] = fill(self.polygons, shape)
        return mask

    def inverse(self, shape: tuple[int, int]) -> np.ndarray:
        """255 outside the polygons: what a masked camera's detectors analyse."""
        keep = self._inverse.get(shape)
        if keep is None:
            keep = cv2.bitwise_not(self.at(shape))
            keep.setflags(write=False)
            self._inverse[shape] = keep
        return keep
