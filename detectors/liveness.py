"""Liveness: a device that stops talking is itself an alarm.

A device is ``device_offline`` when nothing was heard from it for ``missed_intervals`` of its
expected interval (the profile's heartbeat interval unless overridden), or at once when its
retained status (LWT) says ``offline``. It is restored by the next message heard from it,
whatever the kind, received after it went offline. Liveness runs on the caller's (server)
clock and the message's ``received_at``, never on the device's clock, which may be wrong.

A device never heard from since the state was created gets a grace period counted from the
first tick (``DeviceDetectors.initial_state`` stamps it).
"""

from __future__ import annotations

import msgspec
from pydantic import Field

from detectors.base import CLEARED, NO_HITS, RAISED, Hits, Label, Severity
from detectors.registry import DetectorConfig, register
from devices.messages import StatusChange
from devices.profiles import DeviceProfile


class LivenessConfig(DetectorConfig):
    """Offline after missed expected intervals or on the LWT; restored when heard again."""

    missed_intervals: float = Field(
        3.0, gt=0, description="Offline after this many expected intervals without a message."
    )
    interval_s: float | None = Field(
        None,
        gt=0,
        description="Expected interval (s) between messages; null: the profile's heartbeat "
        "interval (smoke 4 h, electrical 5 min, water 15 min).",
    )
    offline_on_lwt: bool = Field(True, description="An LWT 'offline' status raises at once.")
    severity: Severity = Field("yellow", description="Suggested severity of device_offline.")


class LivenessState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Server time of the newest message heard; when offline, since when, why, and the receipt
    time a message must be newer than to restore (the LWT's arrival, or the last message)."""

    last_heard_at: float | None = None
    offline: bool = False
    since_at: float | None = None
    reason: str | None = None
    ref_at: float | None = None


_EMPTY = LivenessState()
_GRACE = "grace"


class LivenessDetector:
    state_type = LivenessState
    rule = "offline"

    def __init__(self, key: str, interval_s: float, cfg: LivenessConfig) -> None:
        self.key = key
        self.interval_s = interval_s
        self.missed = cfg.missed_intervals
        self.timeout_s = interval_s * cfg.missed_intervals
        self.offline_on_lwt = cfg.offline_on_lwt
        self.label = Label("device_offline", "device", cfg.severity)

    def initial_state(self) -> LivenessState:
        return _EMPTY

    def rebase(self, state: LivenessState) -> LivenessState:
        return state  # server time only: a device clock jump changes nothing here

    def on_heard(
        self, device_id: str, received_at: float, state: LivenessState, now: float
    ) -> tuple[LivenessState, Hits]:
        last = state.last_heard_at
        if not state.offline:
            if last is not None and received_at <= last:
                return state, NO_HITS
            return LivenessState(received_at), NO_HITS
        newest = received_at if last is None else max(last, received_at)
        if state.ref_at is not None and received_at <= state.ref_at:
            return msgspec.structs.replace(state, last_heard_at=newest), NO_HITS
        since = state.since_at if state.since_at is not None else received_at
        evidence = {"reason": state.reason, "offline_s": round(max(0.0, received_at - since), 3)}
        hit = self.label.hit(
            device_id, self.key, self.rule, CLEARED, received_at, evidence=evidence
        )
        return LivenessState(newest), (hit,)

    def on_status(
        self, status: StatusChange, state: LivenessState, now: float
    ) -> tuple[LivenessState, Hits]:
        if status.status == "online":
            return self.on_heard(status.device_id, status.received_at, state, now)
        if status.status != "offline" or not self.offline_on_lwt or state.offline:
            return state, NO_HITS
        heard = state.last_heard_at if state.reason != _GRACE else None
        if heard is not None and status.received_at <= heard:
            return state, NO_HITS  # heard from it after this (retained) status was published
        at = status.received_at
        evidence = {"reason": "lwt", "last_heard_at": state.last_heard_at}
        hit = self.label.hit(status.device_id, self.key, self.rule, RAISED, at, evidence=evidence)
        return LivenessState(state.last_heard_at, True, at, "lwt", at), (hit,)

    def on_tick(
        self, device_id: str, state: LivenessState, now: float
    ) -> tuple[LivenessState, Hits]:
        last = state.last_heard_at
        if last is None:
            # not heard yet: the grace period starts now (not a proof of life: an LWT that
            # arrived before this stamp still counts)
            return LivenessState(now, reason=_GRACE), NO_HITS
        if state.offline or now - last < self.timeout_s:
            return state, NO_HITS
        evidence = {
            "reason": "silent",
            "last_heard_at": last,
            "interval_s": self.interval_s,
            "missed_intervals": self.missed,
        }
        hit = self.label.hit(device_id, self.key, self.rule, RAISED, now, evidence=evidence)
        return LivenessState(last, True, now, "silent", last), (hit,)

    def resume(self, state: LivenessState, now: float) -> LivenessState:
        if state.offline:
            return state
        return LivenessState(now if state.last_heard_at is None else max(state.last_heard_at, now))

    def next_wake(self, state: LivenessState) -> float | None:
        if state.offline or state.last_heard_at is None:
            return None
        return state.last_heard_at + self.timeout_s


def build_liveness(cfg: LivenessConfig, profile: DeviceProfile) -> LivenessDetector:
    interval = cfg.interval_s if cfg.interval_s is not None else profile.heartbeat_interval_s
    return LivenessDetector("liveness", interval, cfg)


register(
    "liveness",
    LivenessConfig,
    build_liveness,
    "device_offline after missed_intervals × interval of silence or on LWT offline.",
)
