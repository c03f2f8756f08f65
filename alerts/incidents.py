"""Hits in, grid events out, in the transaction of the batch that produced the hits.

The worker keeps the events that hold a correlation key in memory, applies each hit with
:func:`alerts.correlation.correlate` on top of what earlier hits of the same batch changed,
and writes every change (row, history, change log). Memory takes the batch's changes only
after the commit; a conflict with another worker (an event moved, a key taken) rolls the
batch back and the next attempt starts from the database again.

The deadline sweep runs on a timer: events whose deadline passed are locked with SKIP LOCKED
(so two workers never escalate the same one), escalated one rung with a 督办 record, saved.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import psycopg

from alerts.correlation import (
    DEFAULT_CORRELATION,
    CorrelationConfig,
    DeviceContext,
    EventChange,
    correlate,
    lookup_keys,
)
from alerts.deadlines import DEFAULT_POLICY, DeadlinePolicy, check
from alerts.event import GridEvent
from alerts.severity import DEFAULT_RULES, SeverityRules
from alerts.workflow import DEFAULT_CONFIG, WorkflowConfig
from detectors.base import Hit
from storage.events import (
    append_history,
    due_events,
    load_key_holders,
    log_change,
    save_event,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertRules:
    correlation: CorrelationConfig = DEFAULT_CORRELATION
    severity: SeverityRules = DEFAULT_RULES
    workflow: WorkflowConfig = DEFAULT_CONFIG
    deadlines: DeadlinePolicy = DEFAULT_POLICY


@dataclass(slots=True)
class _Overlay:
    """Events changed by the batch in progress: what memory becomes if it commits."""

    holders: dict[str, GridEvent | None] = field(default_factory=dict)  # None: key released
    changes: list[EventChange] = field(default_factory=list)


class AlertStage:
    def __init__(
        self,
        contexts: Callable[[], Mapping[str, DeviceContext]],
        rules: AlertRules | None = None,
        *,
        sweep_s: float = 5.0,
        entropy: Callable[[], int] = lambda: secrets.randbits(80),
    ) -> None:
        self._contexts = contexts
        self.rules = rules or AlertRules()
        self.sweep_s = sweep_s
        self._entropy = entropy
        self.holders: dict[str, GridEvent] = {}
        self._loaded = False
        self._overlay = _Overlay()
        self._last_sweep = 0.0
        self.opened = 0
        self.escalated = 0
        self.listeners: list[Callable[[EventChange], None]] = []

    async def _ensure_loaded(self, conn: psycopg.AsyncConnection) -> None:
        if not self._loaded:
            self.holders = await load_key_holders(conn)
            self._loaded = True

    def _holder(self, key: str) -> GridEvent | None:
        if key in self._overlay.holders:
            return self._overlay.holders[key]
        return self.holders.get(key)

    async def in_transaction(self, conn: psycopg.AsyncConnection, fresh: list[object]) -> None:
        """Nothing per batch: hits reach :meth:`on_hits` through the detection stage."""

    async def on_hits(self, conn: psycopg.AsyncConnection, hits: list[Hit], now_ts: float) -> None:
        """A :data:`ingest.detection_stage.HitSink`: apply hits in order, persist the changes."""
        await self._ensure_loaded(conn)
        contexts = self._contexts()
        now = datetime.fromtimestamp(now_ts, UTC)
        r = self.rules
        for hit in hits:
            device = contexts.get(hit.device_id) or DeviceContext(device_id=hit.device_id)
            keys = lookup_keys(hit, device, r.correlation)
            holding = {k: e for k in keys if (e := self._holder(k)) is not None}
            changes = correlate(
                hit, device, holding, now, r.correlation, r.severity,
                entropy=self._entropy(), workflow=r.workflow,
            )  # fmt: skip
            for change in changes:
                await self._persist(conn, change, keys_before=holding)

    async def _persist(
        self,
        conn: psycopg.AsyncConnection,
        change: EventChange,
        keys_before: Mapping[str, GridEvent],
    ) -> None:
        event = change.event
        await save_event(conn, event, new=change.kind == "opened")
        await append_history(conn, event.id, change.history)
        if change.cloudevent is not None:
            await log_change(conn, event, change.cloudevent)
        overlay = self._overlay
        for key, before in keys_before.items():
            if before.id == event.id and event.correlation_key != key:
                overlay.holders[key] = None  # released or closed: the key is free
        if event.correlation_key is not None:
            overlay.holders[event.correlation_key] = event
        overlay.changes.append(change)

    def committed(self) -> None:
        overlay, self._overlay = self._overlay, _Overlay()
        for key, event in overlay.holders.items():
            if event is None:
                self.holders.pop(key, None)
            else:
                self.holders[key] = event
        for change in overlay.changes:
            self.opened += change.kind == "opened"
            _log_change(change)
            for listener in self.listeners:
                listener(change)

    def invalidate(self) -> None:
        """Events were changed elsewhere (an API action): read the holders again next time."""
        self._loaded = False

    def rolled_back(self) -> None:
        self._overlay = _Overlay()
        self._loaded = False  # another worker may have moved things: read them again

    async def sweep(self, conn: psycopg.AsyncConnection, now: datetime) -> int:
        """Escalate every open event whose deadline passed; returns how many were escalated."""
        escalated = 0
        async with conn.transaction():
            for event in await due_events(conn, now):
                steps = check(event.workflow, now, self.rules.deadlines)
                if not steps:
                    continue
                ws = steps[-1].state
                updated = msgspec.structs.replace(
                    event,
                    workflow=ws,
                    state=ws.state,
                    severity=ws.severity,
                    version=event.version + 1,
                )
                await save_event(conn, updated, new=False)
                await append_history(conn, event.id, [s.entry for s in steps])
                await log_change(conn, updated, "escalated")
                if updated.correlation_key is not None:
                    self._overlay.holders[updated.correlation_key] = updated
                escalated += 1
        self.committed()
        self.escalated += escalated
        return escalated

    async def periodic(self, conn: psycopg.AsyncConnection, now_ts: float) -> None:
        if now_ts - self._last_sweep < self.sweep_s:
            return
        self._last_sweep = now_ts
        try:
            count = await self.sweep(conn, datetime.fromtimestamp(now_ts, UTC))
        except BaseException:
            self.rolled_back()
            raise
        if count:
            log.info("deadlines passed: events escalated", extra={"escalated": count})


# Changes logged at INFO besides "opened"; the rest (more alarms, clears) at DEBUG.
_LOUD = frozenset({"escalated", "closed"})


def _log_change(change: EventChange) -> None:
    """One line per committed change, with the ids an on-call engineer searches logs by:
    opened, escalated and closed at INFO, the rest (more alarms, clears) at DEBUG."""
    event = change.event
    level = logging.INFO if change.cloudevent in _LOUD or change.kind == "opened" else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "grid event %s",
        change.kind,
        extra={
            "event_id": event.id,
            "grid_code": event.grid_code,
            "device_ids": list(event.device_ids),
            "event_type": event.type,
            "severity": event.severity,
            "state": event.state,
            "change": change.cloudevent,
        },
    )
