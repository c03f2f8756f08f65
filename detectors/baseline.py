"""A per-device statistical baseline: readings far from *this device's* own normal.

Per metric where it is enabled, an exponentially weighted mean and mean absolute deviation
(EWMA / EW-MAD; ``1.2533 × MAD`` estimates σ for Gaussian noise) are learned from the device's
readings. After ``warmup_samples``, a reading whose distance from the mean exceeds ``k`` robust
deviations (never less than the metric's ``floor``) is an outlier: outliers are *not* learned
while the condition is quiet, so a spike cannot drag the baseline, and ``confirm_samples``
outliers in a row raise ``anomaly``. While raised the baseline keeps learning, so a lasting
change of level becomes the new normal and the condition clears (after ``clear_samples``
readings within ``clear_k`` deviations) rather than staying open for ever.

State is five numbers a metric; a reading not newer than the last one learned changes nothing.
"""

from __future__ import annotations

from typing import Self

import msgspec
from pydantic import Field, model_validator

from detectors.base import CLEARED, NO_HITS, RAISED, Category, Hit, Hits, Label, Severity
from detectors.registry import DetectorConfig, register
from devices.messages import Reading
from devices.profiles import DeviceProfile

MAD_TO_SIGMA = 1.2533


class Stat(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Learned mean and mean absolute deviation, samples learned (capped), newest device time,
    whether the anomaly is raised, and the run of readings toward the next change."""

    mean: float = 0.0
    dev: float = 0.0
    n: int = 0
    last: float | None = None
    active: bool = False
    run: int = 0


class BaselineState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    stats: dict[str, Stat] = msgspec.field(default_factory=dict)


_EMPTY = BaselineState()
_NEW = Stat()


class BaselineConfig(DetectorConfig):
    """Flags readings far from the device's own learned normal (EWMA / EW-MAD)."""

    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Metrics with a baseline, each with its deviation floor in the metric's unit "
        "(the smallest deviation ever assumed, so a very steady device is not flagged for noise). "
        "Empty: the detector does nothing.",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Learning weight of each new reading.")
    k: float = Field(6.0, gt=0, description="Outlier beyond this many robust deviations.")
    clear_k: float = Field(3.0, gt=0, description="Back to normal within this many deviations.")
    warmup_samples: int = Field(30, ge=1, description="Readings learned before judging any.")
    confirm_samples: int = Field(3, ge=1, description="Outliers in a row that raise the anomaly.")
    clear_samples: int = Field(3, ge=1, description="Normal readings in a row that clear it.")
    category: Category = Field("device", description="Category of the anomaly hit.")
    severity: Severity = Field("blue", description="Suggested severity.")

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.clear_k > self.k:
            raise ValueError(f"clear_k ({self.clear_k}) must not exceed k ({self.k})")
        bad = [m for m, floor in self.metrics.items() if not floor > 0]
        if bad:
            raise ValueError(f"metrics {bad} need a positive deviation floor")
        return self


class BaselineDetector:
    state_type = BaselineState

    def __init__(self, key: str, cfg: BaselineConfig) -> None:
        self.key = key
        self.cfg = cfg
        self.metrics = frozenset(cfg.metrics)
        self._floors = tuple(sorted(cfg.metrics.items()))
        self._label = Label("anomaly", cfg.category, cfg.severity)

    def initial_state(self) -> BaselineState:
        return _EMPTY

    def rebase(self, state: BaselineState) -> BaselineState:
        stats = {m: msgspec.structs.replace(s, last=None, run=0) for m, s in state.stats.items()}
        return BaselineState(stats) if stats else _EMPTY

    def on_reading(
        self, reading: Reading, state: BaselineState, now: float
    ) -> tuple[BaselineState, Hits]:
        values = reading.values
        stats = state.stats
        new: dict[str, Stat] | None = None
        hits: list[Hit] = []
        for metric, floor in self._floors:
            v = values.get(metric)
            if v is None:
                continue
            cur = stats.get(metric, _NEW)
            if cur.last is not None and reading.ts <= cur.last:
                continue
            if new is None:
                new = dict(stats)
            new[metric] = self._step(reading, metric, floor, cur, v, hits)
        if new is None:
            return state, NO_HITS
        return BaselineState(new), (tuple(hits) if hits else NO_HITS)

    def _step(
        self, reading: Reading, metric: str, floor: float, cur: Stat, v: float, hits: list[Hit]
    ) -> Stat:
        cfg = self.cfg
        ts = reading.ts
        mean, dev, n = cur.mean, cur.dev, cur.n
        if n < cfg.warmup_samples:
            a = max(cfg.alpha, 1.0 / (n + 1))
            dev = dev + a * (abs(v - mean) - dev) if n else 0.0
            return Stat(mean + a * (v - mean), dev, n + 1, ts)
        scale = max(MAD_TO_SIGMA * dev, floor)
        z = (v - mean) / scale
        learned_mean = mean + cfg.alpha * (v - mean)
        learned_dev = dev + cfg.alpha * (abs(v - mean) - dev)
        if not cur.active:
            if abs(z) <= cfg.k:
                return Stat(learned_mean, learned_dev, n, ts)
            run = cur.run + 1
            if run < cfg.confirm_samples:
                return Stat(mean, dev, n, ts, False, run)
            hits.append(self._hit(reading, metric, RAISED, v, mean, scale, z))
            return Stat(mean, dev, n, ts, True, 0)
        run = cur.run + 1 if abs(z) <= cfg.clear_k else 0
        if run < cfg.clear_samples:
            return Stat(learned_mean, learned_dev, n, ts, True, run)
        hits.append(self._hit(reading, metric, CLEARED, v, mean, scale, z))
        return Stat(learned_mean, learned_dev, n, ts)

    def _hit(
        self,
        reading: Reading,
        metric: str,
        phase: str,
        v: float,
        mean: float,
        scale: float,
        z: float,
    ) -> Hit:
        evidence = {"mean": round(mean, 6), "deviation": round(scale, 6), "z": round(z, 2)}
        return self._label.hit(
            reading.device_id,
            self.key,
            "deviation",
            RAISED if phase == RAISED else CLEARED,
            reading.ts,
            metric,
            v,
            evidence,
        )


def build_baseline(cfg: BaselineConfig, _: DeviceProfile) -> BaselineDetector:
    return BaselineDetector("baseline", cfg)


register(
    "baseline",
    BaselineConfig,
    build_baseline,
    "Per-device EWMA / EW-MAD baseline; flags readings far from the device's own normal.",
)
