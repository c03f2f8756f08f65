"""Level rules with a hold time and a separate clear level (hysteresis).

One :class:`ThresholdDetector` watches some metrics against some levels (``alarm``,
``pre_alarm``, ``low``, ``high``…); each (level, metric) pair is its own condition. For a level
that looks *above* (residual current, temperature):

* raise when the value has been at or above ``raise_at`` for ``hold_s`` and on at least
  ``min_samples`` distinct readings; a reading below ``raise_at`` before that starts over, so
  a spike shorter than the hold never alarms;
* once raised, values between ``clear_at`` and ``raise_at`` keep it raised; it clears when the
  value has been below ``clear_at`` for ``clear_hold_s`` (0: at once).

Levels that look *below* (low pressure, battery) mirror this: raise below ``raise_at``, clear
at or above ``clear_at``.

The value of the newest reading is taken to hold until the next one (sample-and-hold), so a
timer can expire on a tick with no new reading; the elapsed time is the larger of the device
time between the supporting readings and the server time since the first of them arrived.
Readings with the same timestamp count once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from detectors.base import CLEARED, NO_HITS, RAISED, Hit, Hits, Label, Phase
from devices.messages import Reading


@dataclass(frozen=True, slots=True)
class LevelSpec:
    """One level of a threshold detector (after its config was validated)."""

    rule: str
    above: bool
    raise_at: float
    clear_at: float
    hold_s: float
    min_samples: int
    clear_hold_s: float
    label: Label


class Cond(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A (level, metric) that is raised, or on its way to be raised or cleared.

    ``since``/``since_at``/``n``/``last``/``value`` describe the pending change (device time of
    its first supporting reading, server time of it, distinct readings, newest device time and
    value); they are unset when nothing is pending.
    """

    active: bool = False
    since: float | None = None
    since_at: float | None = None
    n: int = 0
    last: float | None = None
    value: float | None = None


class ThresholdState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Conditions by ``rule|metric``; a quiet condition (not raised, nothing pending) is absent."""

    conds: dict[str, Cond] = msgspec.field(default_factory=dict)


_ACTIVE = Cond(active=True)
_EMPTY = ThresholdState()


class ThresholdDetector:
    """Levels × metrics with hold and hysteresis; see the module docstring."""

    state_type = ThresholdState

    def __init__(self, key: str, metrics: Iterable[str], levels: Iterable[LevelSpec]) -> None:
        self.key = key
        self.levels = tuple(levels)
        self.metrics = frozenset(metrics)
        self._by_metric = tuple(
            (m, tuple((spec, f"{spec.rule}|{m}") for spec in self.levels))
            for m in sorted(self.metrics)
        )
        self._by_key = {k: (spec, m) for m, pairs in self._by_metric for spec, k in pairs}

    def initial_state(self) -> ThresholdState:
        return _EMPTY

    def rebase(self, state: ThresholdState) -> ThresholdState:
        conds = {k: _ACTIVE for k, c in state.conds.items() if c.active}
        return ThresholdState(conds) if conds else _EMPTY

    def on_reading(
        self, reading: Reading, state: ThresholdState, now: float
    ) -> tuple[ThresholdState, Hits]:
        values = reading.values
        conds = state.conds
        changed: dict[str, Cond | None] | None = None
        hits: list[Hit] | None = None
        ts = reading.ts
        for metric, pairs in self._by_metric:
            v = values.get(metric)
            if v is None:
                continue
            for spec, key in pairs:
                cur = conds.get(key)
                nxt, fired = _step(spec, cur, v, ts, now)
                if nxt is not cur:
                    if changed is None:
                        changed = {}
                    changed[key] = nxt
                if fired:
                    hit = self._hit(reading.device_id, spec, metric, cur, nxt, ts, v, False)
                    hits = [hit] if hits is None else [*hits, hit]
        if changed is None:
            return state, NO_HITS
        return _apply(conds, changed), (tuple(hits) if hits else NO_HITS)

    def on_tick(
        self, device_id: str, state: ThresholdState, now: float
    ) -> tuple[ThresholdState, Hits]:
        changed: dict[str, Cond | None] = {}
        hits: list[Hit] = []
        for key, cur in state.conds.items():
            found = self._by_key.get(key)
            if found is None or cur.since is None or cur.since_at is None:
                continue
            spec, metric = found
            hold = spec.clear_hold_s if cur.active else spec.hold_s
            need = 1 if cur.active else spec.min_samples
            if cur.n < need or now - cur.since_at < hold:
                continue
            nxt = None if cur.active else _ACTIVE
            changed[key] = nxt
            ts = cur.since + (now - cur.since_at)
            hits.append(self._hit(device_id, spec, metric, cur, nxt, ts, cur.value, True))
        if not changed:
            return state, NO_HITS
        return _apply(state.conds, changed), tuple(hits)

    def next_wake(self, state: ThresholdState) -> float | None:
        wake: float | None = None
        for key, cur in state.conds.items():
            found = self._by_key.get(key)
            if found is None or cur.since_at is None:
                continue
            spec = found[0]
            if cur.n < (1 if cur.active else spec.min_samples):
                continue
            at = cur.since_at + (spec.clear_hold_s if cur.active else spec.hold_s)
            wake = at if wake is None else min(wake, at)
        return wake

    def resume(self, state: ThresholdState, now: float) -> ThresholdState:
        conds = {
            k: (msgspec.structs.replace(c, since_at=now) if c.since_at is not None else c)
            for k, c in state.conds.items()
        }
        return ThresholdState(conds) if conds else _EMPTY

    def is_active(self, state: ThresholdState, rule: str, metric: str) -> bool:
        cond = state.conds.get(f"{rule}|{metric}")
        return cond is not None and cond.active

    def set_active(
        self, state: ThresholdState, rule: str, metric: str, active: bool
    ) -> ThresholdState:
        """The state with one condition forced raised or quiet (for events that decide it)."""
        return _apply(state.conds, {f"{rule}|{metric}": _ACTIVE if active else None})

    def _hit(
        self,
        device_id: str,
        spec: LevelSpec,
        metric: str,
        cur: Cond | None,
        nxt: Cond | None,
        ts: float,
        value: float | None,
        on_tick: bool,
    ) -> Hit:
        evidence: dict[str, Any]
        phase: Phase
        if nxt is not None and nxt.active:
            since = cur.since if cur is not None and cur.since is not None else ts
            evidence = {"threshold": spec.raise_at, "hold_s": spec.hold_s, "since": since}
            phase = RAISED
        else:
            evidence = {"clear_at": spec.clear_at}
            phase = CLEARED
        if on_tick:
            evidence["on_tick"] = True
        return spec.label.hit(device_id, self.key, spec.rule, phase, ts, metric, value, evidence)


def _apply(conds: dict[str, Cond], changed: dict[str, Cond | None]) -> ThresholdState:
    new = dict(conds)
    for key, cond in changed.items():
        if cond is None:
            new.pop(key, None)
        else:
            new[key] = cond
    return ThresholdState(new) if new else _EMPTY


def _step(
    spec: LevelSpec, cur: Cond | None, v: float, ts: float, now: float
) -> tuple[Cond | None, bool]:
    """The next state of one (level, metric) after value ``v``; True when it changed phase."""
    active = cur is not None and cur.active
    if spec.above:
        toward = v < spec.clear_at if active else v >= spec.raise_at
    else:
        toward = v >= spec.clear_at if active else v < spec.raise_at
    if not toward:
        # Nothing pending (any pending change is abandoned): raised stays raised, quiet is absent.
        if active:
            return (cur if cur is not None and cur.since is None else _ACTIVE), False
        return None, False
    hold = spec.clear_hold_s if active else spec.hold_s
    need = 1 if active else spec.min_samples
    if (
        cur is None
        or cur.since is None
        or cur.since_at is None
        or cur.last is None
        or ts < cur.since  # only after a clock rebase: start the pending change over
    ):
        since, since_at, n, last = ts, now, 1, ts
    else:
        since, since_at = cur.since, cur.since_at
        n = cur.n + 1 if ts > cur.last else cur.n
        last = max(ts, cur.last)
    if n >= need and max(ts - since, now - since_at) >= hold:
        return (None if active else _ACTIVE), True
    return Cond(active, since, since_at, n, last, v), False
