"""Detection for one worker: engines per device profile and detector state per device.

Still no I/O here: the caller loads states of devices this worker has not seen yet
(:meth:`DetectionRuntime.missing`, :meth:`DetectionRuntime.adopt`), runs a batch
(:meth:`run`), persists what the pass changed in the batch's transaction, and only then
:meth:`commit`s the pass into memory. A failed transaction leaves memory as it was, so the
redelivered batch is judged against the same states again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from detectors.base import Hit
from detectors.engine import DeviceDetectors, DeviceState
from devices.messages import Accepted
from devices.profiles import DeviceProfile


@dataclass(slots=True)
class Pass:
    """What one batch or tick did: hits in order, and every device state it changed."""

    hits: list[Hit] = field(default_factory=list)
    states: dict[str, DeviceState] = field(default_factory=dict)


def _profile_key(profile: DeviceProfile) -> str:
    return profile.type_key + orjson.dumps(profile.options, option=orjson.OPT_SORT_KEYS).decode()


class DetectionRuntime:
    def __init__(self) -> None:
        self._engines: dict[str, DeviceDetectors] = {}
        # Profiles are frozen and swapped whole on a registry reload, so the object itself
        # is a cheap key on the hot path; it is kept alive with its engine so ids stay unique.
        self._by_profile: dict[int, tuple[DeviceProfile, DeviceDetectors]] = {}
        self.states: dict[str, DeviceState] = {}

    def engine(self, profile: DeviceProfile) -> DeviceDetectors:
        """Engines are pure and shared by every device with the same resolved profile."""
        cached = self._by_profile.get(id(profile))
        if cached is not None and cached[0] is profile:
            return cached[1]
        key = _profile_key(profile)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = DeviceDetectors.for_profile(profile)
        if len(self._by_profile) > 100_000:  # registry reloads leave old profiles behind
            self._by_profile.clear()
        self._by_profile[id(profile)] = (profile, engine)
        return engine

    def fork(self) -> DetectionRuntime:
        """A runtime that starts from this one's states and goes its own way (states are
        frozen, so copying the mapping is enough); the engines are shared."""
        other = DetectionRuntime()
        other._engines = self._engines
        other._by_profile = self._by_profile
        other.states = dict(self.states)
        return other

    def missing(self, device_ids: Iterable[str]) -> list[str]:
        return sorted({d for d in device_ids if d not in self.states})

    def adopt(
        self, profiles: Mapping[str, DeviceProfile], saved: Mapping[str, bytes], now: float
    ) -> None:
        """Take over devices: from their saved state (timers restarted at ``now``), or fresh."""
        for device_id, profile in profiles.items():
            engine = self.engine(profile)
            raw = saved.get(device_id)
            if raw is None:
                self.states[device_id] = engine.initial_state(device_id, now)
            else:
                state, _dropped = engine.decode_state(raw)
                self.states[device_id] = engine.resume(state, now)

    def run(
        self, messages: Iterable[Accepted], profiles: Mapping[str, DeviceProfile], now: float
    ) -> Pass:
        """Feed messages of adopted devices; memory is not changed until :meth:`commit`."""
        result = Pass()
        for message in messages:
            device_id = message.device_id
            profile = profiles.get(device_id)
            if profile is None:
                continue  # unregistered since it was accepted
            state = result.states.get(device_id) or self.states[device_id]
            outcome = self.engine(profile).on_message(state, message, now)
            result.states[device_id] = outcome.state
            result.hits.extend(outcome.hits)
        return result

    def tick(self, profiles: Mapping[str, DeviceProfile], now: float) -> Pass:
        """Let time decide for every adopted device whose next wake-up has come."""
        result = Pass()
        for device_id, state in self.states.items():
            profile = profiles.get(device_id)
            if profile is None:
                continue
            engine = self.engine(profile)
            wake = engine.next_wake(state)
            if wake is None or wake > now:
                continue
            outcome = engine.on_tick(state, now)
            if outcome.state != state:
                result.states[device_id] = outcome.state
            result.hits.extend(outcome.hits)
        return result

    def encode(
        self, device_id: str, state: DeviceState, profile: DeviceProfile
    ) -> tuple[bytes, float | None]:
        engine = self.engine(profile)
        return engine.encode_state(state), engine.next_wake(state)

    def commit(self, done: Pass) -> None:
        self.states.update(done.states)

    def forget(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            self.states.pop(device_id, None)
