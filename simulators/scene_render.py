"""Drawing primitives of the synthetic camera scenes (:mod:`simulators.scenes`).

Everything here is deterministic: the background comes from a seeded generator, the per-frame
randomness (sensor noise, rain) from the frame's time. Images are ``H×W×3`` BGR; ``float32``
while light is applied, ``uint8`` at the end.

The background is a street at the edge of a village: sky, a row of buildings with windows,
trees and poles, a pavement and a road. It is textured everywhere (static grain on every
surface) so that focus and view-shift measures have detail to work with, and it is wider than
the picture (a panorama) so that a camera can be turned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

BGR = tuple[int, int, int]

PAN_MARGIN = 0.3
"""The panorama extends this fraction of the picture width on either side of the initial view."""

_NOISE_BANK = 12
_NOISE_UNIT = 8.0  # σ of the stored int8 noise


def panorama_width(width: int) -> int:
    return round(width * (1 + 2 * PAN_MARGIN))


def background(seed: int, width: int, height: int) -> tuple[np.ndarray, float]:
    """The scene's albedo (uint8 BGR, panorama width) and its horizon (0–1 of the height)."""
    rng = np.random.default_rng(seed)
    pw = panorama_width(width)
    h = height
    s = h / 360.0  # drawing scale relative to the 640×360 design size
    horizon = float(rng.uniform(0.42, 0.5))
    yh = int(horizon * h)
    img = np.zeros((h, pw, 3), np.float32)

    # sky: a gradient with soft clouds
    top, low = np.array([205, 165, 120], np.float32), np.array([225, 205, 185], np.float32)
    ramp = np.linspace(0.0, 1.0, yh, dtype=np.float32)[:, None, None]
    img[:yh] = top + (low - top) * ramp
    clouds = _smooth_noise(rng, (yh, pw), 18 * s) * 18
    img[:yh] += clouds[..., None]

    # ground: asphalt with a lighter pavement band and lane marks
    ground = 100 + _smooth_noise(rng, (h - yh, pw), 25 * s) * 9
    img[yh:] = np.stack([ground * 0.98, ground, ground * 1.03], axis=-1)
    pave_end = yh + int(0.1 * h)
    img[yh:pave_end] += 35
    for x in range(0, pw, max(4, int(22 * s))):  # paving joints
        cv2.line(img, (x, yh), (x + int(8 * s), pave_end), (95, 100, 105), 1)
    road_y = int((horizon + 0.3) * h)
    for x in range(int(rng.integers(0, 40)), pw, int(70 * s)):  # lane dashes
        cv2.rectangle(img, (x, road_y), (x + int(35 * s), road_y + max(2, int(4 * s))),
                      (210, 210, 210), -1)
    cv2.line(img, (0, pave_end), (pw, pave_end), (70, 72, 75), max(1, int(3 * s)))

    # buildings with windows and doors along the horizon
    x = -int(rng.integers(0, 60))
    while x < pw:
        bw = int(rng.uniform(0.08, 0.22) * width)
        top_y = int(yh - rng.uniform(0.12, 0.36) * h)
        colour = rng.uniform(70, 200, 3)
        cv2.rectangle(img, (x, top_y), (x + bw, yh), colour.tolist(), -1)
        cv2.rectangle(img, (x, top_y), (x + bw, yh), (colour * 0.6).tolist(), max(1, int(2 * s)))
        ww, wh = int(rng.uniform(6, 12) * s), int(rng.uniform(8, 14) * s)
        gap = int(rng.uniform(8, 14) * s)
        for wy in range(top_y + gap, yh - wh - gap, wh + gap):
            for wx in range(x + gap, x + bw - ww - gap // 2, ww + gap):
                shade = (60, 50, 40) if rng.random() < 0.6 else (120, 200, 230)
                cv2.rectangle(img, (wx, wy), (wx + ww, wy + wh), shade, -1)
        door_x = x + int(rng.uniform(0.2, 0.7) * bw)
        cv2.rectangle(img, (door_x, yh - int(24 * s)), (door_x + int(12 * s), yh), (40, 45, 60), -1)
        x += bw + int(rng.uniform(0, 25) * s)

    # trees and poles in front of the buildings
    for _ in range(int(rng.integers(4, 8) * pw / width)):
        tx, ty = int(rng.uniform(0, pw)), int(yh + rng.uniform(-0.02, 0.06) * h)
        r = int(rng.uniform(14, 26) * s)
        cv2.line(img, (tx, ty), (tx, ty - int(40 * s)), (40, 55, 70), max(2, int(4 * s)))
        leaves = rng.uniform([20, 70, 20], [60, 130, 60]).tolist()
        cv2.circle(img, (tx, ty - int(40 * s) - r // 2), r, leaves, -1)
    for _ in range(int(rng.integers(2, 5) * pw / width)):
        px = int(rng.uniform(0, pw))
        cv2.line(img, (px, int(yh + 0.08 * h)), (px, int(yh - 0.3 * h)), (60, 60, 65),
                 max(2, int(3 * s)))

    # static grain on every surface, fine and coarse
    img += rng.normal(0, 6, (h, pw, 1)).astype(np.float32)
    img += _smooth_noise(rng, (h, pw), 2 * s)[..., None] * 10
    return np.clip(img, 0, 255).astype(np.uint8), horizon


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean noise of unit spread, low-passed with ``sigma`` pixels."""
    small = rng.normal(0, 1, shape).astype(np.float32)
    out = cv2.GaussianBlur(small, (0, 0), max(sigma, 0.5))
    return out / max(float(out.std()), 1e-6)


def pool(shape: tuple[int, int], centre: tuple[float, float], radius: tuple[float, float],
         hardness: float = 2.0) -> np.ndarray:
    """A separable pool of light (float32 ``shape``), 1 at ``centre``, fading over ``radius``
    pixels; ``hardness`` > 1 gives a flatter pool with steeper edges."""
    h, w = shape
    xs = (np.arange(w, dtype=np.float32) - centre[0]) / max(radius[0], 1.0)
    ys = (np.arange(h, dtype=np.float32) - centre[1]) / max(radius[1], 1.0)
    gx = np.exp(-np.abs(xs) ** (2 * hardness) / 2)
    gy = np.exp(-np.abs(ys) ** (2 * hardness) / 2)
    return np.outer(gy, gx).astype(np.float32)


def person_height(y: float, horizon: float, height: int, size: float) -> float:
    """Pixel height of a person standing at relative ``y`` (a flat ground seen in perspective)."""
    depth = min(max((y - horizon) / (1.0 - horizon), 0.0), 1.2)
    return (0.08 + 0.36 * depth) * size * height


def draw_person(img: np.ndarray, foot: tuple[float, float], tall: float, phase: float,
                shirt: BGR, trousers: BGR) -> None:
    """A walking figure with its feet at ``foot`` (pixels), ``tall`` pixels high."""
    fx, fy = foot
    if tall < 4:
        return
    w = tall * 0.28
    hip = (fx, fy - tall * 0.47)
    swing = math.sin(phase) * w * 0.45
    leg = max(1, round(w * 0.32))
    for sign in (1, -1):
        cv2.line(img, _pt(hip), _pt((fx + sign * swing, fy)), trousers, leg, cv2.LINE_AA)
    shoulder_y = fy - tall * 0.8
    torso = np.array([[fx - w / 2, shoulder_y], [fx + w / 2, shoulder_y],
                      [fx + w * 0.42, hip[1] + tall * 0.04], [fx - w * 0.42, hip[1] + tall * 0.04]])
    cv2.fillPoly(img, [np.round(torso).astype(np.int32)], shirt, cv2.LINE_AA)
    arm = max(1, round(w * 0.2))
    for sign in (1, -1):
        hand = (fx + sign * (w * 0.55) - swing * 0.6 * sign, fy - tall * 0.45)
        shoulder = (fx + sign * w * 0.45, shoulder_y + 2)
        cv2.line(img, _pt(shoulder), _pt(hand), shirt, arm, cv2.LINE_AA)
    stripe = tuple(int(c * 0.55) for c in shirt)
    cv2.line(img, _pt((fx - w * 0.45, fy - tall * 0.66)), _pt((fx + w * 0.45, fy - tall * 0.66)),
             stripe, max(1, int(tall * 0.03)), cv2.LINE_AA)
    head = (fx, fy - tall * 0.89)
    cv2.circle(img, _pt(head), max(1, int(tall * 0.09)), (120, 150, 185), -1, cv2.LINE_AA)
    hair = (max(1, int(tall * 0.09)), max(1, int(tall * 0.05)))
    cv2.ellipse(img, _pt((head[0], head[1] - tall * 0.03)), hair, 0, 180, 360, (25, 25, 30), -1,
                cv2.LINE_AA)


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return round(p[0]), round(p[1])


def rain_layer(shape: tuple[int, int], key: int, density: float, angle: float) -> np.ndarray:
    """Streaks of falling rain for one frame (uint8, single channel, additive brightness)."""
    h, w = shape
    rng = np.random.default_rng(key)
    n = int(density * 260 * (w * h) / (640 * 360))
    layer = np.zeros((h, w), np.uint8)
    if n <= 0:
        return layer
    s = h / 360.0
    length = rng.uniform(6, 16, n) * s
    x0 = rng.uniform(-20 * s, w, n)
    y0 = rng.uniform(-20 * s, h, n)
    x1, y1 = x0 + length * math.sin(angle), y0 + length * math.cos(angle)
    value = rng.uniform(35, 90, n)
    segments = np.stack([x0, y0, x1, y1], axis=1).round().astype(np.int32)
    for level in (45, 65, 85):  # three brightness bands, one polylines call each
        sel = segments[(value > level - 20) & (value <= level + 10)]
        lines = [seg.reshape(2, 2) for seg in sel]
        if lines:
            cv2.polylines(layer, lines, False, level, 1, cv2.LINE_AA)
    return layer


@lru_cache(maxsize=4)
def noise_bank(width: int, height: int) -> tuple[np.ndarray, ...]:
    """A fixed set of sensor-noise images (int8, σ = 8) picked from per frame."""
    rng = np.random.default_rng(20261122)
    return tuple(
        np.clip(rng.normal(0, _NOISE_UNIT, (height, width, 3)), -127, 127).astype(np.int8)
        for _ in range(_NOISE_BANK)
    )


def add_noise(img: np.ndarray, key: int, sigma: float) -> None:
    """Add sensor noise of spread ``sigma`` to a float32 image in place; ``key`` picks it."""
    if sigma <= 0:
        return
    h, w = img.shape[:2]
    bank = noise_bank(w, h)
    img += bank[key % len(bank)].astype(np.float32) * np.float32(sigma / _NOISE_UNIT)


def draw_osd(img: np.ndarray, text: str) -> None:
    """The camera's on-screen clock, top left, as IP cameras burn it in."""
    s = img.shape[0] / 360.0
    org = (int(8 * s), int(20 * s))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, text, org, font, 0.5 * s, (0, 0, 0), max(2, int(3 * s)), cv2.LINE_AA)
    cv2.putText(img, text, org, font, 0.5 * s, (255, 255, 255), max(1, int(s)), cv2.LINE_AA)


class Route(Protocol):
    """A walker as :class:`simulators.scenes.Walk` describes one."""

    @property
    def start(self) -> float: ...
    @property
    def path(self) -> Sequence[tuple[float, float]]: ...
    @property
    def speed(self) -> float: ...
    @property
    def pauses(self) -> Sequence[float]: ...
    @property
    def shirt(self) -> BGR: ...
    @property
    def trousers(self) -> BGR: ...
    @property
    def size(self) -> float: ...


class Stroll:
    """Where a walker is at ``t``: foot point and stride phase, or None when not in the scene."""

    def __init__(self, walk: Route) -> None:
        self.walk = walk
        self.legs: list[tuple[float, float, tuple[float, float], tuple[float, float]]] = []
        t = walk.start
        pts = walk.path
        for i in range(len(pts) - 1):
            pause = walk.pauses[i] if i < len(walk.pauses) else 0.0
            if pause > 0:
                self.legs.append((t, t + pause, pts[i], pts[i]))
                t += pause
            dist = math.dist(pts[i], pts[i + 1])
            self.legs.append((t, t + dist / walk.speed, pts[i], pts[i + 1]))
            t += dist / walk.speed
        self.end = t

    def at(self, t: float) -> tuple[tuple[float, float], float] | None:
        for start, end, a, b in self.legs:
            if start <= t < end:
                k = (t - start) / (end - start)
                pos = (a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k)
                if a == b:  # standing: shifting weight a little
                    return pos, math.sin(t * 1.3) * 0.4
                return pos, (t - self.walk.start) * self.walk.speed * 45.0
        return None
