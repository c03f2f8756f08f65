"""Flapping suppression: a condition that toggles too often is reported once, as flapping.

Every hit of the other detectors passes through here. When one condition (one
``condition_key``) changes phase ``max_transitions`` times within ``window_s``, the hit that
reaches the limit is held back and one ``flapping`` hit is raised instead (same category and
suggested severity, the condition it is about in its evidence); further raises and clears of
that condition are held back. After ``quiet_s`` without a change, ``flapping`` clears and,
if the condition ended in another phase than the one downstream last saw, the newest held-back
hit is released, so downstream still sees raised/cleared alternate and ends in the true phase.

Counting runs on the caller's (server) clock: a burst of toggles replayed after an outage is
summarised as flapping too, which is what a grid worker's phone should get.
"""

from __future__ import annotations

import msgspec
from pydantic import Field

from detectors.base import CLEARED, NO_HITS, RAISED, Hit, Hits, Phase, condition_key
from detectors.registry import DetectorConfig, register
from devices.profiles import DeviceProfile


class FlappingConfig(DetectorConfig):
    """Summarises a condition that toggles too often as one flapping hit."""

    max_transitions: int = Field(
        5,
        ge=2,
        description="Raises plus clears of one condition within window_s that make it flap.",
    )
    window_s: float = Field(600.0, gt=0, description="Window (s) in which transitions are counted.")
    quiet_s: float = Field(
        900.0, gt=0, description="Flapping ends after this long (s) without a transition."
    )
    watch: list[str] | None = Field(
        None, description="Detector keys whose conditions are watched; null: all of them."
    )


class Flap(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One condition: server times of its recent transitions; or, while flapping, since when,
    its newest transition, how many were held back, the phase downstream last saw and the
    newest held-back hit."""

    times: tuple[float, ...] = ()
    flapping: bool = False
    since_at: float | None = None
    last_at: float | None = None
    held: int = 0
    reported: Phase | None = None
    pending: Hit | None = None


class FlappingState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    conds: dict[str, Flap] = msgspec.field(default_factory=dict)


_EMPTY = FlappingState()


class FlappingFilter:
    state_type = FlappingState

    def __init__(self, key: str, cfg: FlappingConfig) -> None:
        self.key = key
        self.max_transitions = cfg.max_transitions
        self.window_s = cfg.window_s
        self.quiet_s = cfg.quiet_s
        self.watch = frozenset(cfg.watch) if cfg.watch is not None else None

    def initial_state(self) -> FlappingState:
        return _EMPTY

    def rebase(self, state: FlappingState) -> FlappingState:
        return state  # server time only

    def filter(self, hits: Hits, state: FlappingState, now: float) -> tuple[FlappingState, Hits]:
        conds = dict(state.conds)
        out: list[Hit] = []
        horizon = now - self.window_s
        for hit in hits:
            if self.watch is not None and hit.detector not in self.watch:
                out.append(hit)
                continue
            key = hit.condition_key
            cur = conds.get(key)
            if cur is not None and cur.flapping:
                conds[key] = msgspec.structs.replace(
                    cur, last_at=now, held=cur.held + 1, pending=hit
                )
                continue
            times = (*(t for t in (cur.times if cur else ()) if t > horizon), now)
            if len(times) < self.max_transitions:
                conds[key] = Flap(times)
                out.append(hit)
                continue
            before: Phase = CLEARED if hit.phase == RAISED else RAISED
            conds[key] = Flap((), True, now, now, 1, before, hit)
            evidence = {
                "condition_key": key,
                "type": hit.type,
                "transitions": len(times),
                "window_s": self.window_s,
            }
            out.append(self._flap_hit(hit, RAISED, hit.ts, evidence))
        return FlappingState(conds), tuple(out)

    def on_tick(
        self, device_id: str, state: FlappingState, now: float
    ) -> tuple[FlappingState, Hits]:
        if not state.conds:
            return state, NO_HITS
        conds: dict[str, Flap] = {}
        out: list[Hit] = []
        horizon = now - self.window_s
        for key, cur in state.conds.items():
            if not cur.flapping:
                if any(t > horizon for t in cur.times):
                    conds[key] = cur
                continue
            if cur.last_at is not None and now - cur.last_at < self.quiet_s:
                conds[key] = cur
                continue
            pending = cur.pending
            if pending is not None and pending.phase != cur.reported:
                out.append(
                    msgspec.structs.replace(
                        pending, evidence={**pending.evidence, "after_flapping": True}
                    )
                )
            if pending is not None:
                evidence = {
                    "condition_key": key,
                    "held_back": cur.held,
                    "flapping_s": round(now - (cur.since_at or now), 3),
                    "final_phase": pending.phase,
                }
                out.append(self._flap_hit(pending, CLEARED, now, evidence))
        if len(conds) == len(state.conds) and not out:
            return state, NO_HITS
        return (FlappingState(conds) if conds else _EMPTY), tuple(out)

    def resume(self, state: FlappingState, now: float) -> FlappingState:
        conds = {
            k: (msgspec.structs.replace(c, last_at=now) if c.flapping else c)
            for k, c in state.conds.items()
        }
        return FlappingState(conds) if conds else _EMPTY

    def next_wake(self, state: FlappingState) -> float | None:
        wakes = [c.last_at + self.quiet_s for c in state.conds.values() if c.flapping and c.last_at]
        return min(wakes) if wakes else None

    def _flap_hit(self, hit: Hit, phase: Phase, ts: float, evidence: dict[str, object]) -> Hit:
        rule = f"{hit.detector}.{hit.rule}"
        return Hit(
            device_id=hit.device_id,
            detector=self.key,
            rule=rule,
            type="flapping",
            category=hit.category,
            severity=hit.severity,
            phase=phase,
            ts=ts,
            condition_key=condition_key(hit.device_id, self.key, rule, hit.metric),
            metric=hit.metric,
            evidence=evidence,
        )


def build_flapping(cfg: FlappingConfig, _: DeviceProfile) -> FlappingFilter:
    return FlappingFilter("flapping", cfg)


register(
    "flapping",
    FlappingConfig,
    build_flapping,
    "A condition toggling max_transitions times in window_s is reported once as flapping.",
)
