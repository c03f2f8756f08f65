"""Motion: where the picture differs from a running background, ignoring light and weather.

The chain follows Frigate's improved motion detector (luma plane, contrast stretch, blur,
running average, threshold, dilate, contours above a minimum area, masks, recalibration on
a global change) and adds what the field's false alarms call for:

1. the shared luma plane (:mod:`detectors.video.frames`, 320×180 for 16:9), blurred;
2. **contrast normalisation**: the 4th–96th luma percentile range, smoothed over
   ``contrast_tau_s`` and capped at ``max_stretch``, scales the *threshold* (a dark picture
   is as sensitive as a bright one, its noise not amplified without bound); the background
   stays in luma units, so a drifting stretch never shifts the picture against it;
3. **global exposure**: the background is scaled by the median ratio of picture to background
   before differencing, so dusk, clouds and the camera's gain never lag into motion;
4. **recalibration on a global change**: when more than ``recalibrate_fraction`` of the
   unmasked picture changed at once (lights switched, the camera turned, a lens covered) the
   background and the stretch restart from this frame; for ``calibration_frames`` frames
   nothing is reported, then the background is their per-pixel median (whoever walked or
   whatever beam swept through the switch leaves no ghost); where a box was just before the
   change, the old background is kept, relit as the new one is around it, when the detail
   around it is the same (light changed, not the view): someone standing through the switch
   stays foreground instead of being learnt;
5. changed pixels, with those above half the threshold that touch them (hysteresis, for the
   fainter parts of a body) → dilate → contours; the pieces of one object are grouped
   (:func:`~detectors.video.regions.group`) and a group smaller than ``min_area`` dropped;
6. **weather**: while many specks smaller than ``min_area`` change (rain, snow, insects at
   night), the threshold rises with them (``clutter_scale``, up to ``max_boost``); and a
   group must overlap what changed in the frame before (``consistency_px``):
   rain, snow and insects flick at random places, a person's body overlaps itself from frame
   to frame; a large dense group (a runner, farther between frames than its width) need not,
   merged rain streaks are sparse;
7. **light is not motion**: a group whose detail (the picture minus its local mean) is the
   background's, brighter or darker (correlation ≥ ``lighting_ncc``), is lit — a lamp, a
   beam, a shadow — and learnt at once; so is a group most of whose pixels are lit so in
   their neighbourhood, but for the dense blobs in it that are not (someone under the lamp),
   unless it is dense and carries on a box of the last frame from elsewhere (someone walking
   on: a shirt passing a kerb line correlates with it window by window).
   Where a box was in the last frame, a group judged lit as a whole is judged again pixel by
   pixel (a beam sweeping over someone, a dark figure correlating with the background by
   chance): what is not lit there and continues that box is still motion; in heavy weather,
   whose streaks spoil that pixel test, a region lying where a box of the last frame was
   (intersection over union ≥ 0.5) stays motion as a whole: someone who stopped;
8. **ghosts**: when something that stood long enough to be partly learnt leaves, the place
   differs from the background but matches the long-term background (``ghost_tau_s``,
   learnt only where nothing changed): learnt at once; so is a group where a box was in the
   last frame whose outline is sharper in the background than in the picture
   (``ghost_edge_ratio``: what the background holds has left, e.g. someone learnt while the
   background restarted);
9. **selective update**: pixels inside motion boxes (grown by a quarter, for the faint parts
   of a body) are learnt with ``foreground_tau_s`` (a person standing still stays foreground
   that long), the rest with ``background_tau_s``;
   time constants are in seconds, whatever the frame rate.

:meth:`MotionDetector.detect` is pure: ``(plane, state, ts) -> (state, boxes)``; arrays in
the state are never changed in place. ``MotionState()`` is the reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydantic import Field

from detectors.registry import DetectorConfig
from detectors.video import regions
from detectors.video.frames import Plane


class MotionConfig(DetectorConfig):
    """Motion on the luma plane (defaults for a 320×180 plane at 2–10 sampled frames a second)."""

    threshold: float = Field(
        25.0, gt=0, le=255,
        description="Luma difference, on the contrast-stretched 0–255 scale, a pixel must "
        "exceed to count as changed.",
    )
    min_area: float = Field(
        0.0015, ge=0, lt=1,
        description="Smallest changed region kept as motion, as a fraction of the picture "
        "(0.0015 ≈ 86 px of 320×180; an adult 25 m away is ~2× that).",
    )
    blur_sigma: float = Field(
        2.0, ge=0,
        description="Gaussian blur (plane pixels) before differencing; thin streaks (rain, "
        "snow) fade more than bodies do. 0: none.",
    )
    improve_contrast: bool = Field(
        True, description="Scale the threshold by the 4th–96th luma percentile range."
    )
    max_stretch: float = Field(
        4.0, ge=1, description="Largest contrast gain (limits noise amplification in the dark)."
    )
    contrast_tau_s: float = Field(
        5.0, gt=0, description="Time constant (s) over which the stretch follows the picture."
    )
    background_tau_s: float = Field(
        8.0, gt=0, description="Time constant (s) at which still pixels are learnt."
    )
    foreground_tau_s: float = Field(
        180.0, gt=0,
        description="Time constant (s) at which pixels inside motion boxes are learnt (how "
        "long something that stops stays foreground).",
    )
    lighting_tau_s: float = Field(
        1.0, gt=0,
        description="Time constant (s) at which regions judged lit, or ghosts, are learnt.",
    )
    recalibrate_fraction: float = Field(
        0.3, gt=0, le=1,
        description="Share of the unmasked picture changing at once that restarts the "
        "background (lights, camera turned, lens covered).",
    )
    calibration_frames: int = Field(
        5, ge=1, description="Frames without motion reported after a (re)start, while the "
        "background settles."
    )
    lighting_ncc: float | None = Field(
        0.55, ge=-1, le=1,
        description="Correlation of a region's detail with the background's at or above which "
        "it is a change of light, not motion; null: off.",
    )
    ghost_tau_s: float | None = Field(
        300.0, gt=0,
        description="Time constant (s) of the long-term background, learnt only where nothing "
        "changed: a region that matches it again is a ghost (what stood there has left) and "
        "is learnt at once; null: no ghost test.",
    )
    ghost_edge_ratio: float | None = Field(
        1.3, gt=0,
        description="A region where a box was in the last frame whose outline is this many "
        "times sharper in the background than in the picture is a ghost (the background holds "
        "what has left, e.g. someone learnt while it restarted) and is learnt at once; "
        "null: no outline test.",
    )
    dilate_iterations: int = Field(1, ge=0, description="3×3 dilations of the changed pixels.")
    group_gap: int = Field(
        2, ge=0, description="Pieces closer than this (plane pixels) are one object."
    )
    consistency_px: int | None = Field(
        2, ge=0,
        description="A region smaller than consistent_area must overlap, within this many "
        "plane pixels, what changed in the previous frame; null: off.",
    )
    consistent_area: float = Field(
        0.004, ge=0, lt=1,
        description="Regions at least this large (fraction of the picture) and filled at least "
        "dense_fill need no overlap with the previous frame (a runner moves more than its "
        "width between frames; merged rain streaks are sparse).",
    )
    dense_fill: float = Field(
        0.3, ge=0, le=1, description="Share of its box a region's changed pixels fill to be dense."
    )
    hysteresis: float = Field(
        0.5, gt=0, le=1,
        description="Pixels above this share of the threshold count as changed when they "
        "touch pixels above it (grey trousers on grey asphalt stay with the coat above them); "
        "1: off.",
    )
    clutter_scale: float | None = Field(
        0.02, gt=0,
        description="Weather: while this share of the picture is changed in specks smaller "
        "than min_area (rain, snow, insects), the threshold is doubled (more: more); "
        "null: off.",
    )
    max_boost: float = Field(3.0, ge=1, description="Largest weather factor on the threshold.")
    clutter_tau_s: float = Field(
        2.0, gt=0, description="Time constant (s) at which the weather factor follows."
    )
    gap_reset_s: float = Field(
        5.0, gt=0, description="A gap between frames longer than this restarts the background."
    )


@dataclass(frozen=True, slots=True)
class Box:
    """A motion region in plane pixels (``x1``/``y1`` exclusive) and its changed area."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: float

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    @property
    def foot(self) -> tuple[int, int]:
        """Bottom centre: where a person stands."""
        return (self.x0 + self.x1) // 2, self.y1 - 1

    def over(self, other: Box, iou: float | None = None) -> bool:
        """The two boxes lie mostly over each other: their intersection is half of the smaller
        one, or with ``iou``, at least that share of their union."""
        ix = min(self.x1, other.x1) - max(self.x0, other.x0)
        iy = min(self.y1, other.y1) - max(self.y0, other.y0)
        if ix <= 0 or iy <= 0:
            return False
        sa = (self.x1 - self.x0) * (self.y1 - self.y0)
        sb = (other.x1 - other.x0) * (other.y1 - other.y0)
        if iou is not None:
            return ix * iy >= iou * (sa + sb - ix * iy)
        return 2 * ix * iy >= min(sa, sb)

    def continues(self, other: Box, reach: float) -> bool:
        """``other`` can be this box a frame later: it overlaps this box grown by ``reach`` ×
        its larger side, and neither is more than three times the other's area."""
        g = reach * max(self.x1 - self.x0, self.y1 - self.y0)
        a, b = max(self.area, 1.0), max(other.area, 1.0)
        return (other.x0 < self.x1 + g and other.x1 > self.x0 - g
                and other.y0 < self.y1 + g and other.y1 > self.y0 - g
                and a <= 3 * b and b <= 3 * a)


@dataclass(frozen=True, slots=True, eq=False)
class MotionState:
    """The running and the long-term background (float32, blurred luma), the smoothed stretch
    and what changed in the last frame (uint8 mask); the boxes and changed share of the last
    frame are kept for callers and debugging."""

    background: np.ndarray | None = None
    lo: float = 0.0
    hi: float = 255.0
    calibrating: int = 0
    last_ts: float | None = None
    previous: np.ndarray | None = None
    long: np.ndarray | None = None
    boxes: tuple[Box, ...] = ()
    changed: float = 0.0
    recalibrations: int = 0
    settling: tuple[np.ndarray, ...] = ()  # the pictures since a restart, while settling
    prior: tuple[np.ndarray, tuple[Box, ...]] | None = None  # background and boxes before it
    carried: bool = False  # the boxes are the ones carried through a restart, not yet seen
    boost: float = 1.0  # the threshold's factor for weather (clutter)
    looked: bool = True  # False while restarting: nothing could be found in this frame


class MotionDetector:
    key = "motion"

    def __init__(self, cfg: MotionConfig | None = None) -> None:
        self.cfg = cfg or MotionConfig()
        self._kernel = np.ones((3, 3), np.uint8)
        sigma = self.cfg.blur_sigma
        self._blur = (cv2.getGaussianKernel(round(sigma * 8 + 1) | 1, sigma, cv2.CV_32F)
                      if sigma > 0 else None)
        size = 2 * (self.cfg.consistency_px or 0) + 1
        self._near = np.ones((size, size), np.uint8)

    def initial_state(self) -> MotionState:
        return MotionState()

    def detect(
        self, plane: Plane, state: MotionState, ts: float
    ) -> tuple[MotionState, tuple[Box, ...]]:
        """Motion boxes of ``plane`` (nothing under its masks)."""
        cfg = self.cfg
        bg = state.background
        if (bg is None or bg.shape != plane.shape or state.last_ts is None
                or not 0 <= ts - state.last_ts <= cfg.gap_reset_s):
            return self._calibrate(plane, state, ts, carry=False), ()
        dt = ts - state.last_ts
        a = _rate(dt, cfg.contrast_tau_s)
        lo = state.lo + a * (plane.lo - state.lo)
        hi = state.hi + a * (plane.hi - state.hi)
        img = self._smooth(plane.luma)
        mask, keep = plane.mask, plane.keep
        exposure = regions.exposure(img, bg, mask)
        delta = cv2.absdiff(img, bg * np.float32(exposure) if exposure != 1.0 else bg)
        gain = self._gain(lo, hi)
        changed = regions.above(delta, cfg.threshold / gain, keep)
        visible = plane.visible
        fraction = cv2.countNonZero(changed) / max(visible, 1)
        if fraction > cfg.recalibrate_fraction:
            return self._calibrate(plane, state, ts, changed=fraction), ()
        if state.calibrating > 0:
            return self._settle(img, state, lo, hi, ts, fraction), ()

        boost = state.boost
        if cfg.clutter_scale is not None:  # weather: raise the threshold while it lasts
            clutter = regions.specks(changed, cfg.min_area * changed.size) / max(visible, 1)
            target = min(cfg.max_boost, 1.0 + clutter / cfg.clutter_scale)
            boost += _rate(dt, cfg.clutter_tau_s) * (target - boost)
            if boost > 1.05:
                changed = regions.above(delta, boost * cfg.threshold / gain, keep)
        if cfg.hysteresis < 1.0:
            low = cfg.hysteresis * boost * cfg.threshold / gain
            changed = regions.hysteresis(changed, delta, low, keep)
        found, learnt, held = self._regions(img, changed, state, gain * boost)
        rate = np.full(img.shape, _rate(dt, cfg.background_tau_s), np.float32)
        for r in learnt:
            rate[r.slices()] = _rate(dt, cfg.lighting_tau_s)
        inside = np.zeros(img.shape, np.uint8)
        for b in found:  # grown: parts of a body too faint to count are not learnt either
            if b not in held:
                inside[_grown(b, inside.shape).slices()] = 1
        for crop, pixels in held.values():  # in light: only what is not lit
            ys, xs = crop.slices()
            inside[ys, xs] = cv2.bitwise_or(inside[ys, xs], cv2.dilate(pixels, self._kernel))
        rate[inside > 0] = _rate(dt, cfg.foreground_tau_s)
        background = bg + rate * (img - bg)
        long = state.long
        if cfg.ghost_tau_s is not None:
            if long is None:
                long = background
            else:  # a new array: the state's are never changed in place
                long = long.copy()
                moved = cv2.bitwise_or(inside, changed)
                _, still = cv2.threshold(moved, 0, 255, cv2.THRESH_BINARY_INV)  # == 0
                cv2.accumulateWeighted(img, long, _rate(dt, cfg.ghost_tau_s), mask=still)
        boxes = tuple(found)
        return MotionState(background, lo, hi, 0, ts, changed, long, boxes, fraction,
                           state.recalibrations, boost=boost), boxes

    def _regions(self, img: np.ndarray, changed: np.ndarray, state: MotionState,
                 gain: float) -> tuple[list[Box], list[regions.Region], _Held]:
        """Motion boxes, the regions to learn at once (light, ghosts), and the boxes found in
        light by :meth:`_tracked` with the pixels that are theirs."""
        cfg = self.cfg
        bg = state.background
        assert bg is not None
        long = state.long
        long_scale: float | None = None
        grown = cv2.dilate(changed, self._kernel, iterations=cfg.dilate_iterations)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_px = cfg.min_area * changed.size
        big_px = cfg.consistent_area * changed.size
        near = None
        if cfg.consistency_px is not None and state.previous is not None:
            near = cv2.dilate(state.previous, self._near) if cfg.consistency_px else state.previous
        boxes: list[Box] = []
        learnt: list[regions.Region] = []
        held: _Held = {}
        for r in regions.group(contours, min_px / 4, cfg.group_gap):
            if r.area < min_px:
                continue
            ys, xs = r.slices()
            mine = changed[ys, xs]
            dense = r.area >= big_px and cv2.countNonZero(mine) >= cfg.dense_fill * mine.size
            if cfg.consistency_px is not None and not dense:
                if near is None:
                    continue
                kept = cv2.bitwise_and(mine, near[ys, xs])
                if cv2.countNonZero(kept) < min_px / 2:
                    continue
            if self._outlined_in_background(img, bg, changed, r, state.boxes):
                learnt.append(r)
                continue
            if cfg.lighting_ncc is not None:
                detail = _MIN_DETAIL / gain
                if regions.is_light(img, bg, changed, r, cfg.lighting_ncc, detail):
                    if state.boost >= _CLEAR_WEATHER and self._stays(r, mine, state.boxes):
                        tx, ty, tw, th = cv2.boundingRect(mine)
                        boxes.append(Box(r.x0 + tx, r.y0 + ty, r.x0 + tx + tw, r.y0 + ty + th,
                                         r.area))
                        continue
                    learnt.append(r)
                    if state.boost < _CLEAR_WEATHER:
                        rescued = self._tracked(img, changed, state, r, min_px, detail)
                        held.update(rescued)
                        boxes.extend(rescued)
                    continue
                lit = regions.lit(img, bg, changed, r, cfg.lighting_ncc, detail)
                if (2 * cv2.countNonZero(lit) >= cv2.countNonZero(mine)
                        and not self._moving_on(r, mine, state.boxes)):
                    # mostly light (a lamp came on): what moves in it is what is not lit
                    learnt.append(r)
                    rest = cv2.morphologyEx(cv2.subtract(mine, lit), cv2.MORPH_OPEN, self._kernel)
                    boxes.extend(b for b in self._dense(rest, r, min_px)
                                 if not self._outlined_in_background(
                                     img, bg, changed, _region(b), state.boxes))
                    continue
            if long is not None:
                if long_scale is None:
                    long_scale = regions.exposure(img, long, None)
                if regions.is_ghost(img, long * np.float32(long_scale), changed, r,
                                    cfg.threshold / gain):
                    learnt.append(r)
                    continue
            tx, ty, tw, th = cv2.boundingRect(mine)  # the changed pixels, without the dilation
            boxes.append(Box(r.x0 + tx, r.y0 + ty, r.x0 + tx + tw, r.y0 + ty + th, r.area))
        return boxes, learnt, held

    def _tracked(self, img: np.ndarray, changed: np.ndarray, state: MotionState,
                 r: regions.Region, min_px: float, detail: float) -> _Held:
        """What moved in the last frame and is now inside ``r``, a region judged light as a
        whole: judged pixel by pixel around where it was, so that a beam or a lamp's pool
        sweeping over someone (or a dark figure whose region correlates with the background
        by chance) does not take them with it. Kept: the dense blobs there that are not lit,
        together, when they continue the box of the last frame, their detail is not the
        background's and their outline is not the background's (a ghost). Only those pixels
        are then kept from being learnt: the light around them is learnt at once."""
        assert state.background is not None and self.cfg.lighting_ncc is not None
        out: _Held = {}
        for p in state.boxes:
            if p.x1 <= r.x0 or p.x0 >= r.x1 or p.y1 <= r.y0 or p.y0 >= r.y1:
                continue
            gx, gy = 2 + (p.x1 - p.x0) // 2, 2 + (p.y1 - p.y0) // 4
            crop = regions.Region(max(r.x0, p.x0 - gx), max(r.y0, p.y0 - gy),
                                  min(r.x1, p.x1 + gx), min(r.y1, p.y1 + gy), 0.0)
            mine = changed[crop.slices()]
            lit = regions.lit(img, state.background, changed, crop, self.cfg.lighting_ncc,
                              detail)
            rest = cv2.morphologyEx(cv2.subtract(mine, lit), cv2.MORPH_OPEN, self._kernel)
            pieces = self._dense(rest, crop, min_px / 4)
            if not pieces:
                continue
            b = Box(min(q.x0 for q in pieces), min(q.y0 for q in pieces),
                    max(q.x1 for q in pieces), max(q.y1 for q in pieces),
                    sum(q.area for q in pieces))
            if b.area >= min_px:
                if not p.continues(b, 0.5) or any(b.over(o) for o in out):
                    continue
                blob = _region(b)
                if self._outlined_in_background(img, state.background, changed, blob, (p,)):
                    continue
                sel = rest[b.y0 - crop.y0:b.y1 - crop.y0, b.x0 - crop.x0:b.x1 - crop.x0]
                ncc = regions.correlation(img, state.background, sel, blob, detail)
                if ncc is not None and ncc < self.cfg.lighting_ncc:
                    pixels = np.zeros(rest.shape, np.uint8)
                    ys, xs = slice(b.y0 - crop.y0, b.y1 - crop.y0), slice(
                        b.x0 - crop.x0, b.x1 - crop.x0)
                    pixels[ys, xs] = rest[ys, xs]
                    out[b] = (crop, pixels)
        return out

    def _stays(self, r: regions.Region, mine: np.ndarray, before: tuple[Box, ...]) -> bool:
        """In heavy weather (where streaks spoil the pixel-by-pixel light test), ``r`` judged
        lit as a whole is still what was a box of the last frame when it lies where that box
        was (their intersection at least half their union): someone who stopped, whose
        detail correlates with the background by chance (a dark figure under a lamp). A beam
        or a lamp's pool has no box of its size in that place the frame before."""
        if not before:
            return False
        tx, ty, tw, th = cv2.boundingRect(mine)
        box = Box(r.x0 + tx, r.y0 + ty, r.x0 + tx + tw, r.y0 + ty + th, r.area)
        return any(p.over(box, iou=0.5) for p in before)

    def _moving_on(self, r: regions.Region, mine: np.ndarray, before: tuple[Box, ...]) -> bool:
        """``r`` (its changed pixels ``mine``) is dense and carries on a box of the last frame
        (overlapping it grown by half its size, of a similar area) from somewhere else (less
        than half their union in common): something that walked on, not light. A region most
        of whose pixels look lit but whose detail as a whole is not the background's is,
        where something moved from a frame ago, mostly that something: a bright shirt passing
        a kerb line correlates with it window by window; a lamp's pool that came on has no
        box of its size before it. (Something standing still is not: the background holds
        some of it by then, and its lit part is rightly learnt.)"""
        if not before or cv2.countNonZero(mine) < self.cfg.dense_fill * mine.size:
            return False
        box = Box(r.x0, r.y0, r.x1, r.y1, r.area)
        return any(p.continues(box, 0.5) and not p.over(box, iou=0.5) for p in before)

    def _outlined_in_background(self, img: np.ndarray, bg: np.ndarray, changed: np.ndarray,
                                r: regions.Region, before: tuple[Box, ...]) -> bool:
        """``r`` stands where a box stood in the last frame (the same place, mostly) and its
        outline is sharper in the background than in the picture: a ghost, such as someone
        learnt while the background restarted (lights switched), who has left since."""
        ratio = self.cfg.ghost_edge_ratio
        if ratio is None:
            return False
        box = Box(r.x0, r.y0, r.x1, r.y1, r.area)
        if not any(box.over(p) for p in before):
            return False
        return regions.edge_ratio(img, bg, changed, r) >= ratio

    def _dense(self, mask: np.ndarray, r: regions.Region, min_px: float) -> list[Box]:
        """Boxes of the dense blobs of ``mask`` (a crop at ``r``) of at least ``min_px``."""
        out = []
        grown = cv2.dilate(mask, self._kernel, iterations=self.cfg.dilate_iterations)
        for c in cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]:
            area = float(cv2.contourArea(c))
            x, y, w, h = cv2.boundingRect(c)
            if area >= min_px and cv2.countNonZero(mask[y:y + h, x:x + w]) >= (
                    self.cfg.dense_fill * w * h):
                out.append(Box(r.x0 + x, r.y0 + y, r.x0 + x + w, r.y0 + y + h, area))
        return out

    def _calibrate(self, plane: Plane, state: MotionState, ts: float,
                   changed: float = 0.0, carry: bool = True) -> MotionState:
        """Restart the background from this frame. On a global change (``carry``) what was
        moving in the last frame is carried through (:meth:`_settle`); after a gap or a
        change of size nothing is: it may have left or moved meanwhile."""
        restarts = state.recalibrations + (state.background is not None)
        img = self._smooth(plane.luma)
        prior = state.prior if carry else None
        if carry and state.calibrating == 0:
            # only what was seen moving (not what was carried through the last restart), and
            # only things of a person's or a car's size: not a change of the whole view
            small = tuple(b for b in state.boxes
                          if (b.x1 - b.x0) * (b.y1 - b.y0) <= _CARRIED_SHARE * img.size)
            prior = ((state.background, small)
                     if state.background is not None and small and not state.carried else None)
        return MotionState(img, plane.lo, plane.hi, self.cfg.calibration_frames, ts,
                           changed=changed, recalibrations=restarts, settling=(img,),
                           prior=prior, looked=False)

    def _settle(self, img: np.ndarray, state: MotionState, lo: float, hi: float, ts: float,
                fraction: float) -> MotionState:
        """A frame while settling after a restart. At the end the background is the per-pixel
        median of the settling frames, so that whoever walked or whatever beam swept through
        the restart leaves no ghost (each pixel is background in most of the frames). Where a
        box was just before the restart, the old background is put back, relit as the new one
        is around the box (:func:`~detectors.video.regions.relit`), when the picture as a whole
        and the detail around the box show the same view: someone standing still through a
        switch of the lights stays foreground, and the boxes are carried on for the next
        frame's tests (once: a restart right after it carries nothing)."""
        assert state.background is not None
        frames = (*state.settling, img)
        left = state.calibrating - 1
        if left > 0:
            return replace(state, lo=lo, hi=hi, calibrating=left, last_ts=ts, changed=fraction,
                           settling=frames, looked=False)
        background = _pixel_median(frames)
        kept: list[Box] = []
        if (state.prior is not None and self.cfg.lighting_ncc is not None
                and regions.same_view(state.prior[0], background, self.cfg.lighting_ncc)):
            old, boxes = state.prior
            detail = _MIN_DETAIL / self._gain(lo, hi)
            for b in boxes:
                inner = _grown(b, background.shape)
                patch = regions.relit(old, background, inner, _RING, self.cfg.lighting_ncc,
                                      detail)
                if patch is not None:
                    background[inner.slices()] = patch
                    kept.append(b)
        previous = None
        if kept:  # what still differs, for the next frame's tests, as if it had moved
            delta = cv2.absdiff(img, background)
            previous = np.where(delta > self.cfg.threshold / self._gain(lo, hi),
                                np.uint8(255), np.uint8(0))
        return MotionState(background, lo, hi, 0, ts, previous, changed=fraction,
                           recalibrations=state.recalibrations, boxes=tuple(kept),
                           carried=bool(kept), looked=False)

    def _smooth(self, luma: np.ndarray) -> np.ndarray:
        """Blurred luma as float32 (what the background is made of): the same Gaussian as
        ``GaussianBlur`` on float32 (8σ + 1 taps), filtered straight from uint8 into float32
        without a converted copy first."""
        if self._blur is None:
            img: np.ndarray = luma.astype(np.float32)
            return img
        out: np.ndarray = cv2.sepFilter2D(luma, cv2.CV_32F, self._blur, self._blur,
                                          borderType=cv2.BORDER_REFLECT_101)
        return out

    def _gain(self, lo: float, hi: float) -> float:
        """The contrast stretch 255 / (hi − lo), capped at ``max_stretch``."""
        cfg = self.cfg
        if not cfg.improve_contrast:
            return 1.0
        return 255.0 / max(hi - lo, 255.0 / cfg.max_stretch)


_Held = dict[Box, tuple[regions.Region, np.ndarray]]  # a box found in light, and its pixels
_CLEAR_WEATHER = 2.0  # weather factor above which streaks spoil the pixel-by-pixel light test
_CARRIED_SHARE = 0.1  # largest box (share of the picture) carried through a restart
_RING = 10  # plane pixels around a box in which the light before and after a restart is compared
_MIN_DETAIL = 2.0  # on the stretched scale: less background detail cannot tell light from motion


def _rate(dt: float, tau: float) -> float:
    """Share of the new value taken after ``dt`` seconds with time constant ``tau``."""
    return 1.0 - math.exp(-dt / tau)


def _pixel_median(planes: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per-pixel median of a few float32 planes, as ``np.median`` over their stack gives it,
    by an odd-even transposition sort of elementwise min/max: measured 0.1 ms for six
    320×180 planes, against 5 ms for ``np.median`` (which partitions along a strided axis)."""
    s = list(planes)
    n = len(s)
    for i in range(n):
        for j in range(i % 2, n - 1, 2):
            s[j], s[j + 1] = np.minimum(s[j], s[j + 1]), np.maximum(s[j], s[j + 1])
    mid: np.ndarray = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / np.float32(2)
    return np.array(mid, np.float32)  # a new array: it is changed in place after


def _region(b: Box) -> regions.Region:
    return regions.Region(b.x0, b.y0, b.x1, b.y1, b.area)


def _grown(b: Box, shape: tuple[int, ...]) -> regions.Region:
    """A box grown by a quarter of its size and 2 px, within ``shape``."""
    gx, gy = 2 + (b.x1 - b.x0) // 4, 2 + (b.y1 - b.y0) // 4
    return regions.Region(max(0, b.x0 - gx), max(0, b.y0 - gy), min(shape[1], b.x1 + gx),
                          min(shape[0], b.y1 + gy), b.area)
