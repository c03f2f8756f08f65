"""Camera health: unreachable, frozen, covered/black, blurred, moved — each a ``camera_fault``.

Every fault is its own condition (detector ``camera_health``, rule = the fault, e.g.
``CAM-1/camera_health/frozen``), category ``device``, type ``camera_fault``, with the fault
in ``evidence["fault"]`` and the measures that decided it. A fault is raised once its
symptom has lasted its ``*_after_s`` and clears itself once the symptom has been gone for
``clear_after_s`` (unreachable: at the next frame).

- **unreachable**: no frame for ``unreachable_after_s``. The capture worker calls
  :meth:`CameraHealth.on_no_frame` when a read fails or times out (and at least every few
  seconds while the stream is down); counted from the last frame, or from the first call.
- **frozen**: consecutive frames identical (mean absolute difference of the planes ≤
  ``still_diff``; a frozen stream repeats the same decoded picture) for ``frozen_after_s``,
  an odd pair among three or more still ones let go (an encoder's key frame re-encoding
  the frozen picture). The capture worker feeds only newly decoded frames: a frame fed twice
  is still by definition. Only judged once the camera has shown, while live, that its frames
  differ by at least ``live_diff_ratio`` × ``still_diff`` (sensor noise): a static scene with
  sensor noise is therefore never frozen, and a camera with no noise at all is not judged.
- **covered** (covered or black lens, video loss): the picture's contrast (4th–96th
  percentile luma range) below ``blank_contrast`` for ``covered_after_s``.
- **blurred** (lost focus): the focus measure — Laplacian energy of the picture averaged over
  ``average_tau_s`` (so that sensor noise does not pass for detail) over that of the same
  picture at half size — below ``blur_ratio`` × the reference for ``blurred_after_s``.
  Defocus takes the fine detail first; exposure, light and what is in view change both
  scales alike.
- **moved** (the view turned): phase correlation of the plane against a reference view shifts
  more than ``moved_shift`` of the picture, or finds no peak (``moved_response``), for
  ``moved_after_s``. Evidence ``shift_x``/``shift_y``: how far the picture's content moved,
  in picture widths/heights (negative: left/up; the camera turned the other way).

The references (focus, view) are taken once ``warmup_s`` of pictures were seen, from a picture
that is neither blank nor frozen, then follow slowly (focus over ``reference_tau_s``; the view
is retaken every ``view_refresh_s`` while aligned). A camera that starts broken is judged
against its broken picture for blur and view; the other faults are absolute. While the
picture is blank or frozen, focus and view are not judged. The camera's masks are left out
of every measure (an OSD clock is sharp and still whatever the lens sees). The two heavier
checks (focus and view: ~0.3 ms together) run at most every ``check_interval_s``.

Pure: ``on_frame(plane, state, ts)`` / ``on_no_frame(state, ts)`` → ``(state, hits)``;
``HealthState()`` is the reset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import cv2
import numpy as np
from pydantic import Field

from detectors.base import CLEARED, RAISED, Hit, Label, Severity
from detectors.registry import DetectorConfig
from detectors.video.frames import Plane

FAULTS: Final = ("unreachable", "frozen", "covered", "blurred", "moved")
_CALM: Final = 3  # still pairs needed before an odd one is let go
_VIEW_HEIGHT: Final = 90


class HealthConfig(DetectorConfig):
    """Thresholds and delays of the camera faults."""

    unreachable_after_s: float = Field(
        15.0, gt=0, description="No frame for this long: unreachable."
    )
    frozen_after_s: float = Field(10.0, gt=0, description="Identical frames for this long: frozen.")
    still_diff: float = Field(
        0.02, ge=0, description="Mean absolute luma difference (0–255, plane) between two frames "
        "at or below which they are the same picture."
    )
    live_diff_ratio: float = Field(
        5.0, ge=1, description="Frozen is judged only once live frames were seen to differ by at "
        "least this many times still_diff."
    )
    blank_contrast: float = Field(
        20.0, ge=0, description="Luma 4th–96th percentile range (0–255) below which the picture "
        "is blank (covered or black)."
    )
    covered_after_s: float = Field(5.0, gt=0, description="Blank for this long: covered.")
    blur_ratio: float = Field(
        0.5, gt=0, lt=1, description="Focus measure below this share of the reference: blurred."
    )
    blurred_after_s: float = Field(8.0, gt=0, description="Blurred for this long: fault.")
    moved_shift: float = Field(
        0.04, gt=0, description="View shift (share of the picture size) beyond which it moved."
    )
    moved_response: float = Field(
        0.04, ge=0, le=1, description="Phase-correlation peak below which the reference view is "
        "not found at all (the camera looks elsewhere)."
    )
    moved_after_s: float = Field(5.0, gt=0, description="Moved for this long: fault.")
    clear_after_s: float = Field(
        3.0, ge=0, description="A fault clears once its symptom has been gone this long."
    )
    check_interval_s: float = Field(
        1.0, ge=0, description="Focus and view are measured at most this often."
    )
    warmup_s: float = Field(5.0, ge=0, description="Pictures seen before references are taken.")
    average_tau_s: float = Field(
        1.5, gt=0, description="Focus and view are measured on the picture averaged over this "
        "time constant (s), so that sensor noise does not pass for detail."
    )
    reference_tau_s: float = Field(
        600.0, gt=0, description="Time constant (s) at which the focus reference follows the "
        "scene (only while within 0.6–1.6× of it)."
    )
    view_refresh_s: float = Field(
        300.0, gt=0, description="The reference view is retaken this often while aligned."
    )
    severity: Severity = Field("blue", description="Suggested severity of camera_fault.")


@dataclass(frozen=True, slots=True)
class Symptom:
    """One fault's debounce: since when it is seen (or gone), and whether it is raised."""

    bad_since: float | None = None
    good_since: float | None = None
    active: bool = False
    raised_at: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class HealthState:
    first_ts: float | None = None
    last_frame: float | None = None
    prev: np.ndarray | None = None
    still_since: float | None = None
    calm: int = 0
    live_diff: float | None = None
    seen_since: float | None = None
    average: np.ndarray | None = None
    last_check: float | None = None
    focus_ref: float | None = None
    view_ref: np.ndarray | None = None
    view_at: float | None = None
    symptoms: Mapping[str, Symptom] = field(default_factory=dict)
    measures: Mapping[str, float] = field(default_factory=dict)

    def active(self) -> frozenset[str]:
        return frozenset(k for k, s in self.symptoms.items() if s.active)


class CameraHealth:
    key = "camera_health"

    def __init__(self, device_id: str, cfg: HealthConfig | None = None) -> None:
        self.device_id = device_id
        self.cfg = cfg or HealthConfig()
        self.label = Label("camera_fault", "device", self.cfg.severity)
        self._window: dict[tuple[int, int], np.ndarray] = {}
        self._ref_spectrum: tuple[np.ndarray, np.ndarray] | None = None

    def initial_state(self) -> HealthState:
        return HealthState()

    def on_no_frame(self, state: HealthState, ts: float) -> tuple[HealthState, tuple[Hit, ...]]:
        first = state.first_ts if state.first_ts is not None else ts
        state = replace(state, first_ts=first)
        since = state.last_frame if state.last_frame is not None else first
        sym = state.symptoms.get("unreachable", Symptom())
        if sym.active or ts - since < self.cfg.unreachable_after_s:
            return state, ()
        raised = Symptom(bad_since=since, active=True, raised_at=ts)
        hit = self._hit("unreachable", RAISED, ts, {"no_frame_s": round(ts - since, 3)})
        return replace(state, symptoms={**state.symptoms, "unreachable": raised}), (hit,)

    def on_frame(
        self, plane: Plane, state: HealthState, ts: float
    ) -> tuple[HealthState, tuple[Hit, ...]]:
        cfg = self.cfg
        hits: list[Hit] = []
        symptoms = dict(state.symptoms)
        back = symptoms.get("unreachable")
        if back is not None and back.active:
            down = ts - back.bad_since if back.bad_since is not None else None
            hits.append(self._hit("unreachable", CLEARED, ts, {"down_s": down}))
            symptoms["unreachable"] = Symptom()
        last = state.last_frame
        gap = last is not None and not 0 <= ts - last < cfg.unreachable_after_s
        if gap or state.prev is None or state.prev.shape != plane.shape:
            state = replace(state, prev=None, still_since=None, calm=0)
        measures = dict(state.measures)
        first = state.first_ts if state.first_ts is not None else ts
        seen = state.seen_since if state.seen_since is not None and not gap else ts

        # frozen: the same picture again and again (one odd pair in _CALM still ones is let go)
        still_since, calm, live = state.still_since, state.calm, state.live_diff
        if state.prev is not None:
            keep = plane.keep
            pixels = plane.luma.size if keep is None else max(1, cv2.countNonZero(keep))
            diff = float(cv2.norm(plane.luma, state.prev, cv2.NORM_L1, keep)) / pixels
            measures["frame_diff"] = round(diff, 4)
            if diff <= cfg.still_diff:
                still_since = last if still_since is None else still_since
                calm += 1
            elif still_since is not None and calm >= _CALM:
                calm = 0
            else:
                still_since, calm = None, 0
                step = 0.2 if live is None or diff < live else 0.02  # follows the quieter pairs
                live = diff if live is None else live + step * (diff - live)
        blank = plane.spread < cfg.blank_contrast
        measures["contrast"] = round(plane.spread, 2)
        measures["mean_luma"] = round(plane.mean, 2)
        judged = live is not None and live >= cfg.live_diff_ratio * cfg.still_diff
        frozen = still_since is not None and judged and not blank
        self._judge(symptoms, "covered", blank, ts, cfg.covered_after_s, measures, hits)
        self._judge(symptoms, "frozen", frozen, ts, cfg.frozen_after_s, measures, hits,
                    bad_since=still_since)

        average = self._average(plane, state, ts)
        state = replace(state, first_ts=first, last_frame=ts, prev=plane.luma,
                        still_since=still_since, calm=calm, live_diff=live, seen_since=seen,
                        average=average, symptoms=symptoms, measures=measures)
        usable = not blank and still_since is None
        due = state.last_check is None or ts - state.last_check >= cfg.check_interval_s
        if usable and due and ts - seen >= cfg.warmup_s:
            state = self._check(average, plane.keep, state, symptoms, measures, ts, hits)
        return state, tuple(hits)

    # -- focus and view

    def _average(self, plane: Plane, state: HealthState, ts: float) -> np.ndarray:
        """The plane averaged over ``average_tau_s`` (float32); restarts after a gap."""
        avg, last, luma = state.average, state.last_frame, plane.luma
        if avg is None or avg.shape != luma.shape or last is None or not 0 <= ts - last <= 5.0:
            img: np.ndarray = luma.astype(np.float32)
            return img
        a = 1.0 - math.exp(-(ts - last) / self.cfg.average_tau_s)
        out = avg.copy()  # the state's arrays are never changed in place
        cv2.accumulateWeighted(luma, out, a)  # one pass, straight from uint8
        return out

    def _check(self, average: np.ndarray, keep: np.ndarray | None, state: HealthState,
               symptoms: dict[str, Symptom], measures: dict[str, float], ts: float,
               hits: list[Hit]) -> HealthState:
        cfg = self.cfg
        focus = _focus(average, keep)
        view = self._view(average, keep)
        measures["focus"] = round(focus, 4)
        if state.focus_ref is None or state.view_ref is None:
            return replace(state, last_check=ts, focus_ref=focus, view_ref=view, view_at=ts)
        ratio = focus / max(state.focus_ref, 1e-9)
        measures["focus_ratio"] = round(ratio, 3)
        blurred = ratio < cfg.blur_ratio
        self._judge(symptoms, "blurred", blurred, ts, cfg.blurred_after_s, measures, hits)
        focus_ref = state.focus_ref
        if 0.6 <= ratio <= 1.6 and not symptoms.get("blurred", Symptom()).active:
            follow = 1 - math.exp(-cfg.check_interval_s / cfg.reference_tau_s)
            focus_ref += follow * (focus - focus_ref)

        (dx, dy), response = _phase_shift(state.view_ref, view, self._spectrum(state.view_ref))
        h, w = view.shape
        shift = math.hypot(dx / w, dy / h)
        measures.update(shift=round(shift, 4), shift_x=round(dx / w, 4), shift_y=round(dy / h, 4),
                        response=round(float(response), 3))
        moved = shift > cfg.moved_shift or response < cfg.moved_response
        # a blurred picture correlates weakly: only a clear shift says it moved then
        seen_moved = shift > cfg.moved_shift if blurred else moved
        self._judge(symptoms, "moved", seen_moved, ts, cfg.moved_after_s, measures, hits)
        view_ref, view_at = state.view_ref, state.view_at
        aligned = math.hypot(dx, dy) < 0.5 and response > 3 * cfg.moved_response
        if (aligned and not moved and not blurred and view_at is not None
                and ts - view_at >= cfg.view_refresh_s):
            view_ref, view_at = view, ts
        return replace(state, last_check=ts, focus_ref=focus_ref, view_ref=view_ref,
                       view_at=view_at)

    def _spectrum(self, view_ref: np.ndarray) -> np.ndarray:
        """The reference view's conjugate spectrum, kept while the reference is the same
        array (it is retaken every ``view_refresh_s``): one transform fewer per check."""
        kept = self._ref_spectrum
        if kept is None or kept[0] is not view_ref:
            kept = self._ref_spectrum = (view_ref, np.conj(np.fft.rfft2(view_ref)))
        return kept[1]

    def _view(self, average: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        """The view: the averaged plane at ~90 rows, zero-mean (masked areas zero: a static
        overlay such as the OSD clock would hold the view in place), windowed (float32)."""
        img = average
        if keep is not None:
            img = np.where(keep > 0, img - np.float32(cv2.mean(img, keep)[0]), np.float32(0))
        else:
            img = img - np.float32(img.mean())
        if img.shape[0] >= 2 * _VIEW_HEIGHT:
            img = cv2.pyrDown(img)
        key = (int(img.shape[0]), int(img.shape[1]))
        win = self._window.get(key)
        if win is None:
            win = self._window[key] = cv2.createHanningWindow((key[1], key[0]), cv2.CV_32F)
        return np.asarray(img * win, np.float32)

    # -- debounce and hits

    def _judge(self, symptoms: dict[str, Symptom], fault: str, bad: bool, ts: float,
               after_s: float, measures: Mapping[str, float], hits: list[Hit],
               bad_since: float | None = None) -> None:
        """Debounce one symptom; ``bad_since`` overrides when it started (frozen: the first
        of the identical frames)."""
        sym = symptoms.get(fault, Symptom())
        if bad:
            since = bad_since if bad_since is not None else sym.bad_since
            since = ts if since is None else since
            sym = replace(sym, bad_since=since, good_since=None)
            if not sym.active and ts - since >= after_s:
                sym = replace(sym, active=True, raised_at=ts)
                hits.append(self._hit(fault, RAISED, ts, {**measures, "since": since}))
        else:
            good = sym.good_since if sym.good_since is not None else ts
            sym = replace(sym, bad_since=None, good_since=good)
            if sym.active and ts - good >= self.cfg.clear_after_s:
                lasted = ts - sym.raised_at if sym.raised_at is not None else None
                hits.append(self._hit(fault, CLEARED, ts, {**measures, "duration_s": lasted}))
                sym = Symptom()
        symptoms[fault] = sym

    def _hit(self, fault: str, phase: Any, ts: float, evidence: Mapping[str, Any]) -> Hit:
        return self.label.hit(self.device_id, self.key, fault, phase, ts,
                              evidence={"fault": fault, **evidence})


def _focus(average: np.ndarray, keep: np.ndarray | None) -> float:
    """Sharpness: Laplacian energy of the time-averaged plane over that of the plane at half
    size. Defocus takes the fine detail first, so the ratio falls; exposure, lighting and what
    is in view change both scales alike. Masked areas (a sharp OSD) are left out."""
    fine = _energy(cv2.Laplacian(average, cv2.CV_32F), keep)
    half = cv2.pyrDown(average)
    keep_half = None if keep is None else cv2.resize(
        keep, (half.shape[1], half.shape[0]), interpolation=cv2.INTER_NEAREST)
    coarse = _energy(cv2.Laplacian(half, cv2.CV_32F), keep_half)
    return fine / max(coarse, 1e-6)


def _energy(lap: np.ndarray, keep: np.ndarray | None) -> float:
    _, std = cv2.meanStdDev(lap, mask=keep)
    return float(std[0, 0]) ** 2


def _phase_shift(ref: np.ndarray, cur: np.ndarray,
                 ref_spectrum: np.ndarray | None = None) -> tuple[tuple[float, float], float]:
    """Shift (pixels, x and y) of view ``cur`` against view ``ref`` by phase correlation, and
    the height of the correlation peak (1: the same picture; ~0: nothing in common).
    ``ref_spectrum``: ``conj(rfft2(ref))`` when the caller keeps it.

    Written with numpy rather than ``cv2.phaseCorrelate``, whose result for the same inputs
    changes from call to call in the opencv-python 4.14 and 5.0 wheels.
    """
    if ref_spectrum is None:
        ref_spectrum = np.conj(np.fft.rfft2(ref))
    cross = ref_spectrum * np.fft.rfft2(cur)
    cross /= np.abs(cross) + 1e-9
    h, w = ref.shape
    surface = np.fft.irfft2(cross, s=(h, w))
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    rows, cols = [(iy + d) % h for d in (-1, 0, 1)], [(ix + d) % w for d in (-1, 0, 1)]
    patch = np.clip(surface[np.ix_(rows, cols)], 0, None)
    total = float(patch.sum()) or 1.0
    dy = iy + float(patch.sum(axis=1) @ _OFFSETS) / total
    dx = ix + float(patch.sum(axis=0) @ _OFFSETS) / total
    dx = dx - w if dx > w / 2 else dx
    dy = dy - h if dy > h / 2 else dy
    return (float(dx), float(dy)), float(surface[iy, ix])


_OFFSETS: Final = np.array([-1.0, 0.0, 1.0])
