"""The change mask of :mod:`detectors.video.motion` and what its regions are: moving things,
light, or ghosts.

On the blurred luma plane (``img``), its running background (``bg``, same units) and the
mask of changed pixels (uint8, 255 = changed):

- :func:`exposure`: how much brighter the whole picture is than its background;
- :func:`hysteresis`: the weaker changes that touch strong ones (the faint parts of a body);
- :func:`specks`: how much changed in specks too small to be anything (rain, snow);
- :func:`group` joins the pieces one object falls into so that each is judged as a whole;
- :func:`lit` (per pixel) and :func:`is_light` (per region): the detail (picture minus its
  local mean) is the background's detail, only brighter or darker — a lamp's pool, a
  headlight beam, a shadow;
- :func:`is_ghost`: the region looks as it did before something stood there long enough to be
  partly learnt (it matches the long-term background) — that something has left;
  :func:`edge_ratio`: the region's outline is sharper in the background than in the picture —
  what the background holds has left;
- :func:`correlation`: :func:`is_light`'s measure over chosen pixels (what is left of a
  region judged lit, once its lit pixels are taken out);
- :func:`relit`: an old background in the light of a new one, for what stood through a
  restart of the background, when :func:`same_view` says the view is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(slots=True)
class Region:
    """Plane-pixel bounds (``x1``/``y1`` exclusive) and the changed area of a group of blobs."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: float

    def slices(self, margin: int = 0) -> tuple[slice, slice]:
        return (slice(max(0, self.y0 - margin), self.y1 + margin),
                slice(max(0, self.x0 - margin), self.x1 + margin))


def group(contours: Sequence[np.ndarray], min_piece: float, gap: int) -> list[Region]:
    """Bounding regions of the contours of at least ``min_piece`` area, joined while any two are
    within ``gap`` pixels of each other. (Joining pieces one above the other across a wider
    gap, for a person whose coat and trousers differ from the background unequally, joined
    rain streaks too: worse on the clip set.)"""
    regions = []
    for c in contours:
        area = float(cv2.contourArea(c))
        if area >= min_piece:
            x, y, w, h = cv2.boundingRect(c)
            regions.append(Region(x, y, x + w, y + h, area))
    merged = True
    while merged and len(regions) > 1:
        merged = False
        out: list[Region] = []
        for r in regions:
            for o in out:
                if (r.x0 <= o.x1 + gap and o.x0 <= r.x1 + gap
                        and r.y0 <= o.y1 + gap and o.y0 <= r.y1 + gap):
                    o.x0, o.y0 = min(o.x0, r.x0), min(o.y0, r.y0)
                    o.x1, o.y1 = max(o.x1, r.x1), max(o.y1, r.y1)
                    o.area += r.area
                    merged = True
                    break
            else:
                out.append(r)
        regions = out
    return regions


def lit(img: np.ndarray, bg: np.ndarray, changed: np.ndarray, region: Region, min_ncc: float,
        min_detail: float, window: int = 7) -> np.ndarray:
    """The changed pixels of ``region`` (a uint8 crop, 255 = lit) whose ``window``²
    neighbourhood of high-passed picture correlates with the background's at least ``min_ncc``
    (the same detail, lit differently) where the background has ``min_detail`` of it."""
    ys, xs = region.slices()
    m = window
    ys_m = slice(max(0, ys.start - m), ys.stop + m)
    xs_m = slice(max(0, xs.start - m), xs.stop + m)
    a = _high_pass(img[ys_m, xs_m])
    b = _high_pass(bg[ys_m, xs_m])
    size = (window, window)
    ma, mb = cv2.boxFilter(a, -1, size), cv2.boxFilter(b, -1, size)
    cov = cv2.boxFilter(a * b, -1, size) - ma * mb
    va = cv2.boxFilter(a * a, -1, size) - ma * ma
    vb = cv2.boxFilter(b * b, -1, size) - mb * mb
    ncc = cov / np.sqrt(np.maximum(va * vb, np.float32(1e-6)))
    oy, ox = ys.start - ys_m.start, xs.start - xs_m.start
    h, w = changed[ys, xs].shape
    inner = (slice(oy, oy + h), slice(ox, ox + w))
    sel = (ncc[inner] >= min_ncc) & (vb[inner] >= min_detail * min_detail) & (changed[ys, xs] > 0)
    return np.where(sel, np.uint8(255), np.uint8(0))


def _high_pass(img: np.ndarray) -> np.ndarray:
    out: np.ndarray = img - cv2.GaussianBlur(img, (0, 0), 2.5)
    return out


def is_light(img: np.ndarray, bg: np.ndarray, changed: np.ndarray, region: Region,
             min_ncc: float, min_detail: float) -> bool:
    """Normalised cross-correlation of the high-passed picture and background over the changed
    pixels of ``region`` is at least ``min_ncc``; a background with less detail (spread of
    the high-passed luma) than ``min_detail`` there cannot tell."""
    ys, xs = region.slices(4)
    cur, ref = img[ys, xs], bg[ys, xs]
    sel = changed[ys, xs] > 0
    if int(sel.sum()) < 12:
        return False
    dc = (cur - cv2.GaussianBlur(cur, (0, 0), 2.5))[sel]
    db = (ref - cv2.GaussianBlur(ref, (0, 0), 2.5))[sel]
    sb, sc = float(db.std()), float(dc.std())
    if sb < min_detail or sc < 1e-3:
        return False  # no detail in the background there: light or not cannot be told
    ncc = float(np.mean((dc - dc.mean()) * (db - db.mean()))) / (sb * sc)
    return ncc >= min_ncc


def correlation(img: np.ndarray, bg: np.ndarray, sel: np.ndarray, region: Region,
                min_detail: float) -> float | None:
    """:func:`is_light`'s correlation over the pixels ``sel`` (a uint8 crop at ``region``,
    255 = judged), high-passed with the region's surroundings; None when the background has
    less detail than ``min_detail`` there (light or not cannot be told)."""
    m = 4
    ys, xs = region.slices(m)
    oy, ox = region.y0 - ys.start, region.x0 - xs.start
    inner = (slice(oy, oy + sel.shape[0]), slice(ox, ox + sel.shape[1]))
    pick = sel > 0
    if int(pick.sum()) < 12:
        return None
    dc = _high_pass(img[ys, xs])[inner][pick]
    db = _high_pass(bg[ys, xs])[inner][pick]
    sb, sc = float(db.std()), float(dc.std())
    if sb < min_detail or sc < 1e-3:
        return None
    return float(np.mean((dc - dc.mean()) * (db - db.mean()))) / (sb * sc)


def is_ghost(img: np.ndarray, long: np.ndarray, changed: np.ndarray, region: Region,
             threshold: float) -> bool:
    """Most (60 %) of the region's changed pixels are within ``threshold`` of the long-term
    background: the place looks as it did before something stood there."""
    ys, xs = region.slices()
    sel = changed[ys, xs] > 0
    n = int(sel.sum())
    if n == 0:
        return False
    back = cv2.absdiff(img[ys, xs], long[ys, xs])[sel] <= threshold
    return int(back.sum()) >= 0.6 * n


def relit(old: np.ndarray, new: np.ndarray, inner: Region, margin: int, min_ncc: float,
          min_detail: float) -> np.ndarray | None:
    """The ``old`` background inside ``inner``, lit as ``new`` is lit around it (the ratio of
    the two in a ring ``margin`` pixels wide around ``inner``, spread smoothly over it); None
    when the ring's detail in ``new`` is not ``old``'s (correlation below ``min_ncc``, or less
    detail than ``min_detail``): then the view changed, not its light."""
    h, w = old.shape[:2]
    ys = slice(max(0, inner.y0 - margin), min(h, inner.y1 + margin))
    xs = slice(max(0, inner.x0 - margin), min(w, inner.x1 + margin))
    o, n = old[ys, xs], new[ys, xs]
    iy, ix = slice(inner.y0 - ys.start, inner.y1 - ys.start), slice(
        inner.x0 - xs.start, inner.x1 - xs.start)
    ring = np.ones(o.shape, np.float32)
    ring[max(0, iy.start - 3):iy.stop + 3, max(0, ix.start - 3):ix.stop + 3] = 0
    sel = ring > 0
    if int(sel.sum()) < 50:
        return None
    do, dn = _high_pass(o)[sel], _high_pass(n)[sel]
    so, sn = float(do.std()), float(dn.std())
    if so < min_detail or sn < 1e-3:
        return None
    if float(np.mean((do - do.mean()) * (dn - dn.mean()))) / (so * sn) < min_ncc:
        return None
    ratio = n / np.maximum(o, np.float32(1.0))
    light = _smooth_fit(ratio, sel)
    out: np.ndarray = (o * light)[iy, ix]
    return out


def same_view(old: np.ndarray, new: np.ndarray, min_ncc: float) -> bool:
    """The two pictures show the same view, lit alike or not: the correlation of their detail
    (high-passed, on a sparse grid) is at least ``min_ncc``. A switched lamp scales the detail
    where it shines; a turned camera moves it."""
    do = _high_pass(old)[::2, ::2].ravel()
    dn = _high_pass(new)[::2, ::2].ravel()
    so, sn = float(do.std()), float(dn.std())
    if so < 1e-3 or sn < 1e-3:
        return False
    return float(np.mean((do - do.mean()) * (dn - dn.mean()))) / (so * sn) >= min_ncc


def _smooth_fit(values: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """A quadratic surface fitted to ``values`` where ``sel``, evaluated everywhere and kept
    within the range of the fitted values (a lamp's pool varies smoothly over a person's
    size; the range keeps an edge of the frame from extrapolating wildly)."""
    h, w = values.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = xx / max(w - 1, 1) * 2 - 1
    yy = yy / max(h - 1, 1) * 2 - 1
    terms = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=-1)
    coef, *_ = np.linalg.lstsq(terms[sel], values[sel], rcond=None)
    fitted: np.ndarray = (terms @ coef.astype(np.float32)).astype(np.float32)
    known = values[sel]
    return np.clip(fitted, float(known.min()), float(known.max()))


def edge_ratio(img: np.ndarray, bg: np.ndarray, changed: np.ndarray, region: Region) -> float:
    """How much stronger the edges along the outline of the region's changed pixels are in the
    background than in the picture (mean gradient magnitude on a band around the outline).
    Something in view has its edge in the picture; a ghost (the background holds what has
    left) has it in the background only."""
    ys, xs = region.slices(3)
    sel = changed[ys, xs]
    outline = cv2.morphologyEx(sel, cv2.MORPH_GRADIENT, _CROSS) > 0
    if int(outline.sum()) < 12:
        return 0.0
    gi = _gradient(img[ys, xs])[outline]
    gb = _gradient(bg[ys, xs])[outline]
    return float(gb.mean()) / max(float(gi.mean()), 1e-3)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _gradient(img: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    out: np.ndarray = cv2.magnitude(gx, gy)
    return out


def specks(changed: np.ndarray, min_px: float) -> int:
    """Changed pixels in specks smaller than ``min_px``. (The labels of the changed pixels
    counted with ``bincount``: ``connectedComponentsWithStats`` costs ~0.3 ms on a 320×180
    plane even when it is empty, this a fraction of it; nothing changed costs nothing.)"""
    if not cv2.countNonZero(changed):
        return 0
    n, labels = cv2.connectedComponents(changed, connectivity=8)
    areas = np.bincount(labels[changed > 0], minlength=n)[1:]
    return int(areas[areas < min_px].sum())


def above(values: np.ndarray, threshold: float, keep: np.ndarray | None = None) -> np.ndarray:
    """uint8 mask: 255 where ``values`` exceed ``threshold`` and ``keep`` (if given) is set.
    (``cv2.compare`` writes the mask in one pass; ``np.where`` on a comparison takes three.)"""
    # (the stubs know only the array form of src2; OpenCV takes a scalar there too)
    out: np.ndarray = cv2.compare(values, float(threshold), cv2.CMP_GT)  # type: ignore[call-overload]
    if keep is not None:
        cv2.bitwise_and(out, keep, dst=out)
    return out


def exposure(img: np.ndarray, bg: np.ndarray, mask: np.ndarray | None) -> float:
    """How much brighter the whole picture is than its background: the median ratio on a
    sparse grid (a lamp, a beam or a person moves the median little)."""
    cur, ref = img[::4, ::4], bg[::4, ::4]
    sel = ref > 8.0
    if mask is not None:
        sel &= mask[::4, ::4] == 0
    if int(sel.sum()) < 50:
        return 1.0
    k = _median(cur[sel] / ref[sel])
    return min(max(k, 0.5), 2.0)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array, the same value by a sort: measured 7 µs against 40 µs
    for the few thousand ratios of :func:`exposure` (its partition is slow on their many
    repeated values)."""
    s = np.sort(values)
    n = s.size
    return float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)


def hysteresis(strong: np.ndarray, delta: np.ndarray, low: float,
               keep: np.ndarray | None) -> np.ndarray:
    """The pixels above ``low`` (where ``keep``, if given) connected to a ``strong`` one
    (uint8 255)."""
    if not cv2.countNonZero(strong):
        return strong  # no seed: nothing grows
    weak = above(delta, low, keep)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    lut = np.zeros(n, np.uint8)
    lut[labels[strong > 0]] = 255
    lut[0] = 0
    out: np.ndarray = np.take(lut, np.asarray(labels, np.int32))
    return out
