"""Sensor detectors: pure code fed with a device's messages, its detector state and the time.

What ingest calls (see :mod:`detectors.engine`)::

    engine = DeviceDetectors.for_profile(profile)      # once per distinct profile; shareable
    state = engine.initial_state(device_id, now)       # or engine.decode_state(saved)[0]
    outcome = engine.on_message(state, message, now)   # any devices.messages.Accepted
    outcome = engine.on_tick(state, now)               # at engine.next_wake(state), or periodically
    state, hits = outcome.state, outcome.hits
    saved = engine.encode_state(state)

Detectors register by key on import (one module per concern); their configs, the per-type
defaults and a device's overrides are merged by :mod:`detectors.config`.
"""

from __future__ import annotations

from detectors import (  # noqa: F401  (each registers its detectors)
    baseline,
    battery,
    device_events,
    flapping,
    liveness,
    patrol,
    threshold_rules,
    trend,
)
from detectors.base import CLEARED, RAISED, Category, Hit, Label, Phase, Severity, condition_key
from detectors.config import (
    OPTIONS_KEY,
    ClockConfig,
    DetectorConfigError,
    ResolvedConfig,
    check_overrides,
    resolve,
)
from detectors.engine import DeviceDetectors, DeviceState, Outcome
from detectors.registry import DetectorConfig, registered
from devices.overrides import register_override_key

register_override_key(OPTIONS_KEY, check_overrides)

__all__ = [
    "CLEARED",
    "OPTIONS_KEY",
    "RAISED",
    "Category",
    "ClockConfig",
    "DetectorConfig",
    "DetectorConfigError",
    "DeviceDetectors",
    "DeviceState",
    "Hit",
    "Label",
    "Outcome",
    "Phase",
    "ResolvedConfig",
    "Severity",
    "check_overrides",
    "condition_key",
    "registered",
    "resolve",
]
