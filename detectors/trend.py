"""Rate-of-change rules: fire-water pressure dropping (burst pipe, closed valve, pump failure),
cable temperature rising fast.

For each reading the value is compared with the *references* of the last ``window_s`` of device
time: the most extreme value of each of ``buckets`` slices of the window (highest for a drop,
lowest for a rise), so memory stays bounded whatever the reporting rate. The change is a trend
when, against some reference, it is at least ``min_delta`` **and** at least ``rate`` per unit of
time between the two samples. It is raised after ``confirm_samples`` consecutive readings show
it (a one-sample spike does not), and cleared either on *recovery* (the value is back within
``recover_delta`` of the reference it left from) or once *settled* (``clear_samples`` readings in
a row no longer show a trend).

References older than the window are forgotten, so no rate is ever taken across a gap longer
than the window (two hours of silence followed by a lower value is not a "drop rate"). A reading
not newer than the last one seen for its metric (duplicate, late) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Self

import msgspec
from pydantic import Field, model_validator

from detectors.base import CLEARED, NO_HITS, RAISED, Hit, Hits, Label, Severity
from detectors.registry import DetectorConfig, register
from detectors.threshold_rules import CABLE_PROBES
from devices.messages import Reading
from devices.profiles import DeviceProfile

ClearOn = Literal["recovery", "settled"]


@dataclass(frozen=True, slots=True)
class TrendSpec:
    rule: str
    falling: bool
    min_delta: float
    rate_per_s: float
    window_s: float
    buckets: int
    confirm_samples: int
    clear_on: ClearOn
    recover_delta: float
    clear_samples: int
    label: Label


class Track(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One metric: references as flat ``(ts, value, ts, value, …)``, oldest first; the device
    time of the newest sample; whether the trend is raised; the run of consecutive readings
    toward the next change; the reference value the change left from."""

    pts: tuple[float, ...] = ()
    last: float | None = None
    active: bool = False
    n: int = 0
    ref: float | None = None


class TrendState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    tracks: dict[str, Track] = msgspec.field(default_factory=dict)


_EMPTY = TrendState()
_NEW = Track()


class TrendDetector:
    state_type = TrendState

    def __init__(self, key: str, metrics: Iterable[str], spec: TrendSpec) -> None:
        self.key = key
        self.spec = spec
        self.metrics = frozenset(metrics)
        self._order = tuple(sorted(self.metrics))
        self._bucket_s = spec.window_s / spec.buckets

    def initial_state(self) -> TrendState:
        return _EMPTY

    def rebase(self, state: TrendState) -> TrendState:
        tracks = {m: Track(active=True, ref=t.ref) for m, t in state.tracks.items() if t.active}
        return TrendState(tracks) if tracks else _EMPTY

    def on_reading(
        self, reading: Reading, state: TrendState, now: float
    ) -> tuple[TrendState, Hits]:
        values = reading.values
        ts = reading.ts
        tracks = state.tracks
        new: dict[str, Track] | None = None
        hits: list[Hit] = []
        for metric in self._order:
            v = values.get(metric)
            if v is None:
                continue
            cur = tracks.get(metric, _NEW)
            if cur.last is not None and ts <= cur.last:
                continue
            nxt = self._step(reading.device_id, metric, cur, ts, v, hits)
            if new is None:
                new = dict(tracks)
            new[metric] = nxt
        if new is None:
            return state, NO_HITS
        return TrendState(new), (tuple(hits) if hits else NO_HITS)

    def _step(
        self, device_id: str, metric: str, cur: Track, ts: float, v: float, hits: list[Hit]
    ) -> Track:
        spec = self.spec
        falling = spec.falling
        pts = cur.pts
        cutoff = ts - spec.window_s
        i = 0
        while i < len(pts) and pts[i] < cutoff:
            i += 2
        if i:
            pts = pts[i:]
        best_t = best_v = best_d = 0.0
        found = False
        # Most readings change little: skip the scan unless the most extreme reference is far
        # enough away to matter.
        refs = pts[1::2]
        far = bool(refs) and (
            max(refs) - v >= spec.min_delta if falling else v - min(refs) >= spec.min_delta
        )
        for j in range(0, len(pts) if far else 0, 2):
            t0 = pts[j]
            v0 = pts[j + 1]
            delta = v0 - v if falling else v - v0
            if (
                delta >= spec.min_delta
                and delta >= spec.rate_per_s * (ts - t0)
                and (not found or delta > best_d)
            ):
                best_t, best_v, best_d, found = t0, v0, delta, True
        if pts and pts[-2] // self._bucket_s == ts // self._bucket_s:
            if (v >= pts[-1]) if falling else (v <= pts[-1]):
                pts = (*pts[:-2], ts, v)
        else:
            pts = (*pts, ts, v)

        active, n, ref = cur.active, cur.n, cur.ref
        if not active:
            if not found:
                return Track(pts, ts)
            n += 1
            ref = best_v if ref is None else (max(ref, best_v) if falling else min(ref, best_v))
            if n < spec.confirm_samples:
                return Track(pts, ts, False, n, ref)
            rate = best_d / (ts - best_t) * 60.0
            evidence = {
                "reference": best_v,
                "reference_ts": best_t,
                "delta": round(best_d, 6),
                "rate_per_min": round(rate, 6),
                "window_s": spec.window_s,
            }
            hits.append(
                spec.label.hit(device_id, self.key, spec.rule, RAISED, ts, metric, v, evidence)
            )
            return Track(pts, ts, True, 0, ref)
        if spec.clear_on == "recovery":
            assert ref is not None
            ok = v >= ref - spec.recover_delta if falling else v <= ref + spec.recover_delta
        else:
            ok = not found
        n = n + 1 if ok else 0
        if n < spec.clear_samples:
            return Track(pts, ts, True, n, ref)
        cleared = {"reference": ref, "clear_on": spec.clear_on}
        hits.append(spec.label.hit(device_id, self.key, spec.rule, CLEARED, ts, metric, v, cleared))
        return Track(pts, ts)


class PressureDropConfig(DetectorConfig):
    """Sudden fire-water pressure drop: burst pipe, closed valve, pump failure."""

    metric: str = Field("pressure_mpa", description="Metric holding the pressure.")
    drop_mpa: float = Field(0.1, gt=0, description="Smallest drop (MPa) that counts.")
    rate_mpa_per_min: float = Field(
        0.02, gt=0, description="The drop must be at least this fast (MPa/min) on average."
    )
    window_s: float = Field(
        900.0, gt=0, description="How far back (s) the pressure before the drop is looked for."
    )
    buckets: int = Field(12, ge=1, le=60, description="Slices of the window kept as references.")
    confirm_samples: int = Field(
        2, ge=1, description="Consecutive readings that must show the drop (a spike does not)."
    )
    recover_mpa: float = Field(
        0.05,
        gt=0,
        description="Cleared when back within this (MPa) of the pressure before the drop.",
    )
    severity: Severity = Field("orange", description="Suggested severity.")


class CableTempRiseConfig(DetectorConfig):
    """Cable temperature rising fast (> 10 °C/min is a warning in its own right)."""

    metrics: list[str] = Field(
        default_factory=lambda: list(CABLE_PROBES), description="Probe metrics watched."
    )
    rise_c: float = Field(5.0, gt=0, description="Smallest rise (°C) that counts; filters noise.")
    rate_c_per_min: float = Field(
        10.0, gt=0, description="The rise must be at least this fast (°C/min)."
    )
    window_s: float = Field(180.0, gt=0, description="How far back (s) the rise is measured from.")
    buckets: int = Field(12, ge=1, le=60, description="Slices of the window kept as references.")
    confirm_samples: int = Field(
        2, ge=1, description="Consecutive readings that must show the rise."
    )
    clear_samples: int = Field(
        2, ge=1, description="Cleared after this many readings in a row show no fast rise."
    )
    severity: Severity = Field("yellow", description="Suggested severity.")

    @model_validator(mode="after")
    def _metrics(self) -> Self:
        if not self.metrics:
            raise ValueError("metrics must name at least one probe")
        return self


def build_pressure_drop(cfg: PressureDropConfig, _: DeviceProfile) -> TrendDetector:
    spec = TrendSpec(
        "drop",
        True,
        cfg.drop_mpa,
        cfg.rate_mpa_per_min / 60.0,
        cfg.window_s,
        cfg.buckets,
        cfg.confirm_samples,
        "recovery",
        cfg.recover_mpa,
        1,
        Label("pressure_drop", "water", cfg.severity),
    )
    return TrendDetector("pressure_drop", [cfg.metric], spec)


def build_cable_temp_rise(cfg: CableTempRiseConfig, _: DeviceProfile) -> TrendDetector:
    spec = TrendSpec(
        "rise",
        False,
        cfg.rise_c,
        cfg.rate_c_per_min / 60.0,
        cfg.window_s,
        cfg.buckets,
        cfg.confirm_samples,
        "settled",
        0.0,
        cfg.clear_samples,
        Label("cable_temp_rise", "electrical", cfg.severity),
    )
    return TrendDetector("cable_temp_rise", cfg.metrics, spec)


register(
    "pressure_drop",
    PressureDropConfig,
    build_pressure_drop,
    "Pressure falling by ≥ drop_mpa at ≥ rate within window_s; clears on recovery.",
)
register(
    "cable_temp_rise",
    CableTempRiseConfig,
    build_cable_temp_rise,
    "Cable temperature rising by ≥ rise_c at ≥ rate within window_s; clears when settled.",
)
