"""The default picture of a simulated camera: a box moving over a textured background.

Any object with ``frame(t) -> H×W×3 uint8 BGR`` can be served (``simulators.scenes`` has
the scenes with ground truth); this one exists so that the simulator and its tests need
nothing else. It stamps the scene time in milliseconds into a row of black/white cells at
the top-left, so that a client can tell a fresh frame from a repeated one and measure
latency through the encoder: :func:`read_stamp` reads it back from a decoded frame.

Numpy only: this module runs under Debian's ``/usr/bin/python3`` in the simulator process.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

STAMP_BITS = 32


class FrameSource(Protocol):
    """What the simulator renders: the picture at ``t`` seconds since the camera started."""

    def frame(self, t: float) -> np.ndarray: ...


def _cell(width: int) -> int:
    """Stamp cell size: large enough to survive H.264 at low bitrates, 32 cells fit across."""
    return max(4, min(8, width // (STAMP_BITS + 8)))


class MovingBox:
    """A bright box crossing a noisy gradient once every ``period_s``, bouncing at the edges."""

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        *,
        period_s: float = 4.0,
        seed: int = 0,
        stamp: bool = True,
    ) -> None:
        if width < 64 or height < 48:
            raise ValueError(f"frame too small for the pattern: {width}x{height}")
        self.width = width
        self.height = height
        self.period_s = period_s
        self.stamp = stamp
        rng = np.random.default_rng(seed)
        ramp = np.linspace(40, 160, width, dtype=np.float32)[None, :, None]
        shade = np.linspace(0.7, 1.0, height, dtype=np.float32)[:, None, None]
        tint = np.array([1.0, 0.9, 0.8], dtype=np.float32)[None, None, :]
        noise = rng.normal(0.0, 12.0, (height, width, 1)).astype(np.float32)
        self._background: np.ndarray = np.clip(ramp * shade * tint + noise, 0, 255).astype(np.uint8)
        self.box_w = max(8, width // 8)
        self.box_h = max(8, height // 5)

    def box_at(self, t: float) -> tuple[int, int, int, int]:
        """Ground truth: the box as (x, y, w, h) at ``t``."""
        span = self.width - self.box_w
        phase = (t / self.period_s) % 2.0
        x = round(span * (phase if phase <= 1.0 else 2.0 - phase))
        y = (self.height - self.box_h) // 2
        return x, y, self.box_w, self.box_h

    def frame(self, t: float) -> np.ndarray:
        image = self._background.copy()
        x, y, w, h = self.box_at(t)
        image[y : y + h, x : x + w] = (40, 200, 240)
        if self.stamp:
            write_stamp(image, int(t * 1000))
        return image


def write_stamp(image: np.ndarray, value: int) -> None:
    """Write ``value`` (32 bits) as black/white cells along the top-left of ``image``."""
    cell = _cell(image.shape[1])
    image[: cell * 2, : cell * (STAMP_BITS + 2)] = 0
    for bit in range(STAMP_BITS):
        if (value >> (STAMP_BITS - 1 - bit)) & 1:
            x = cell * (bit + 1)
            image[cell // 2 : cell // 2 + cell, x : x + cell] = 255


def read_stamp(image: np.ndarray) -> int:
    """The value :func:`write_stamp` wrote, read from cell centres of a decoded frame."""
    cell = _cell(image.shape[1])
    row = image[cell // 2 + cell // 2, :, :].astype(np.int32).sum(axis=1) // 3
    value = 0
    for bit in range(STAMP_BITS):
        centre = cell * (bit + 1) + cell // 2
        value = (value << 1) | int(row[centre] > 128)
    return value


def moving_box(name: str, width: int, height: int, index: int) -> FrameSource:
    """The simulator's default scene factory: a moving box, a different period per camera."""
    return MovingBox(width, height, period_s=3.0 + index, seed=index)
