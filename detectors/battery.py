"""Low battery: the battery level a device reports, or its own ``low_battery`` event.

One condition per device: raised when ``battery_pct`` is below ``low_pct`` (a threshold level
with hysteresis, see :mod:`detectors.threshold`) or when the device says ``low_battery``;
cleared when a reading is at or above ``clear_pct``, or by a ``restore`` naming
``low_battery``. A plain ``restore`` (after a smoke alarm) does not clear it: the battery is no
fuller for it.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from detectors.base import CLEARED, NO_HITS, RAISED, Hits, Label, Phase, Severity
from detectors.registry import DetectorConfig, register
from detectors.threshold import LevelSpec, ThresholdDetector, ThresholdState
from devices.messages import DeviceEvent
from devices.profiles import DeviceProfile


class BatteryConfig(DetectorConfig):
    """Battery below low_pct (reported level or the device's own low_battery event)."""

    metric: str = Field("battery_pct", description="Metric holding the battery level (%).")
    low_pct: float = Field(20.0, gt=0, le=100, description="Raise below this level (%).")
    clear_pct: float = Field(25.0, gt=0, le=100, description="Clear at or above this level (%).")
    hold_s: float = Field(0.0, ge=0, description="The low level must hold this long (s).")
    min_samples: int = Field(1, ge=1, description="Distinct readings needed below low_pct.")
    from_events: bool = Field(True, description="The device's low_battery event raises it too.")
    severity: Severity = Field("blue", description="Suggested severity of low_battery.")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.clear_pct <= self.low_pct:
            raise ValueError(f"clear_pct ({self.clear_pct}) must be above low_pct ({self.low_pct})")
        return self


class BatteryDetector(ThresholdDetector):
    rule = "low"

    def __init__(self, key: str, cfg: BatteryConfig) -> None:
        label = Label("low_battery", "device", cfg.severity)
        level = LevelSpec(
            self.rule, False, cfg.low_pct, cfg.clear_pct, cfg.hold_s, cfg.min_samples, 0.0, label
        )
        super().__init__(key, [cfg.metric], [level])
        self.metric = cfg.metric
        self.label = label
        self.from_events = cfg.from_events

    def on_event(
        self, event: DeviceEvent, state: ThresholdState, now: float
    ) -> tuple[ThresholdState, Hits]:
        if not self.from_events:
            return state, NO_HITS
        active = self.is_active(state, self.rule, self.metric)
        phase: Phase
        if event.event == "low_battery" and not active:
            phase, new = RAISED, True
        elif event.event == "restore" and event.detail.get("restores") == "low_battery" and active:
            phase, new = CLEARED, False
        else:
            return state, NO_HITS
        level = event.detail.get("battery_pct")
        value = (
            float(level) if isinstance(level, int | float) and not isinstance(level, bool) else None
        )
        hit = self.label.hit(
            event.device_id,
            self.key,
            self.rule,
            phase,
            event.ts,
            self.metric,
            value,
            {"event": event.event},
        )
        return self.set_active(state, self.rule, self.metric, new), (hit,)


def build_battery(cfg: BatteryConfig, _: DeviceProfile) -> BatteryDetector:
    return BatteryDetector("battery", cfg)


register(
    "battery",
    BatteryConfig,
    build_battery,
    "low_battery below low_pct (clears at clear_pct) or on the device's low_battery event.",
)
