"""Hits become grid events: which open event a hit joins, and what that changes.

**Keys.** Every hit has a *correlation key* naming the incident it belongs to: by default
``fire``, ``electrical``, ``water`` and ``video`` hits are keyed by their device's **site**
(``fire:site:<site>``; a device without a site falls back to ``fire:device:<device_id>``),
``device`` hits (offline, low battery, tamper, …) by **device and type**
(``device:device_type:<type>:<device_id>``). One event at a time holds a key
(``grid_events.correlation_key``, unique while set).

**Joining.** A raised hit joins the holder of its key while the holder *absorbs*: it is
open (not closed or a false alarm) and either still has a raised condition
(``hold_while_active``, default on: an alarm that has not cleared is the same incident however
long it lasts) or its last hit (``last_seen``, device time) is at most ``window`` (30 min)
before the hit. Otherwise the holder is **released** (its key set to None; an open one gets a
history note naming its successor) and the hit **opens** a new event. A closed holder keeps
its key until then ("lazy release"): that is what lets a replayed hit of a closed incident
be recognised instead of opening a second event, so whoever closes an event should leave
its key alone.

**Cross-category links.** ``links`` (default ``fire ← electrical``) lets an open fire event
at a site also record the electrical hits at that site: their type goes into its ``types``
and the hit into its evidence (``linked``), not into its devices, alarm count, conditions or
``last_seen``; the severity rules then see ``smoke_alarm`` and ``cable_overtemp`` together.
The electrical hit still joins or opens its own electrical event. A fire event opened at a
site where an electrical event is open starts with that event's types and latest raised
evidence. Only site-keyed events link.

**Idempotency.** A hit whose ``(condition_key, phase, ts)`` is in the event's evidence has
been applied and changes nothing. The evidence keeps the latest ``evidence_limit`` items
(default 20), so that is the memory; beyond it a replay is counted again, but it never opens
a second event: a raise whose device time is not after the last hit of a *closed* holder is
recorded on that closed event (with a history note), not opened anew, and every hit applied
to an earlier holder of the key is older than the current holder's ``last_seen``. A raise of
a condition already raised counts as an alarm but not as a new condition.

**Clears.** A cleared hit removes its condition from the holder's ``active_conditions``;
when none remain, ``workflow.on_condition_cleared`` either closes the event (auto-close
types: ``device_offline``) or records a ``clear`` and leaves it to its people (fire and
electrical are always closed by a person). A clear with no open holder, for a condition
the holder does not have raised, or already applied, changes nothing.

**Persistence** (the caller, per hit, in one transaction):

1. ``keys = lookup_keys(hit, device, config)``; load the events holding those keys
   (``SELECT … WHERE correlation_key = ANY(keys) FOR UPDATE``) into ``{key: event}``;
2. ``changes = correlate(hit, device, events, now, config, rules, entropy=randbits(80))``;
3. for each change *in order*: ``opened`` → ``INSERT`` ``event.to_row()``; otherwise
   ``UPDATE … WHERE id = event.id AND version = event.version - 1`` (no row: another worker
   won; roll back and start again at 1); append ``change.history`` to
   ``grid_event_history``; when ``change.cloudevent`` is set, append to ``event_log`` with
   that ``change`` and ``event.to_cloudevent_data(full history)``. A ``released`` change
   comes before the ``opened`` one that takes its key. One call changes an event at most once.

Opened events stay ``reported``: dispatch is its own workflow action. ``suggested_assignee``
(the first grid member of the device's grid, ``roles.pick_assignee``) is what an
auto-dispatcher or the console offers.

Pure: time (``now``, aware; hits carry epoch seconds) and the id's random bits are arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeAlias

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.deadlines import require_aware
from alerts.event import Evidence, GridEvent, Location, new_event_id
from alerts.roles import LADDER, SYSTEM_ACTOR, Assignee, Role, pick_assignee
from alerts.severity import DEFAULT_RULES, SeverityRules, highest, raise_severity, rank
from alerts.workflow import DEFAULT_CONFIG, WorkflowConfig, apply, on_condition_cleared, open_event
from alerts.workflow_enums import Action, Severity
from alerts.workflow_state import HistoryEntry
from detectors.base import Category, Hit
from devices.registry import Device, Grid, Member

ChangeKind: TypeAlias = Literal["opened", "updated", "cleared", "released"]
CloudEventType: TypeAlias = Literal["opened", "updated", "state_changed", "escalated", "closed"]


class Scope(StrEnum):
    """What a category's correlation key groups by."""

    SITE = "site"  # one event per site (falls back to DEVICE for a device without a site)
    DEVICE = "device"  # one event per device
    DEVICE_TYPE = "device_type"  # one event per device and event type


DEFAULT_SCOPES: Mapping[Category, Scope] = {
    "fire": Scope.SITE,
    "electrical": Scope.SITE,
    "water": Scope.SITE,
    "video": Scope.SITE,
    "device": Scope.DEVICE_TYPE,
    "patrol": Scope.DEVICE_TYPE,
    "safety": Scope.SITE,
}


def _default_scopes() -> dict[Category, Scope]:
    return dict(DEFAULT_SCOPES)


def _default_links() -> dict[Category, frozenset[Category]]:
    return {"fire": frozenset({"electrical"})}


class CorrelationConfig(BaseModel):
    """How hits are grouped into grid events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: timedelta = Field(
        default=timedelta(minutes=30),
        gt=timedelta(0),
        description="A hit joins an open event whose last hit is at most this long before it "
        "(ISO 8601 'PT30M', 'HH:MM:SS' or seconds).",
    )
    hold_while_active: bool = Field(
        default=True,
        description="An open event with a condition still raised joins hits whatever the "
        "window says; false: the window alone decides.",
    )
    scopes: dict[Category, Scope] = Field(
        default_factory=_default_scopes,
        description="Category → key scope: 'site' (falls back to 'device' when the device has "
        "no site), 'device' or 'device_type'. Categories not named keep the default; "
        "'device' is always 'device_type'.",
    )
    links: dict[Category, frozenset[Category]] = Field(
        default_factory=_default_links,
        description="Category → other categories whose hits at the same site an open event "
        "of that category also records for its severity rules (site-keyed events only).",
    )
    evidence_limit: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Evidence items an event keeps (the latest); also how far back a "
        "replayed hit is recognised.",
    )

    @model_validator(mode="before")
    @classmethod
    def _keep_unnamed_scopes(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("scopes"), Mapping):
            data = {**data, "scopes": {**DEFAULT_SCOPES, **data["scopes"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> CorrelationConfig:
        if self.scopes.get("device", Scope.DEVICE_TYPE) is not Scope.DEVICE_TYPE:
            raise ValueError("scopes.device: device events are always keyed per device and type")
        for category, others in self.links.items():
            if category in others:
                raise ValueError(f"links.{category}: a category does not link to itself")
        return self

    @property
    def window_s(self) -> float:
        return self.window.total_seconds()


DEFAULT_CORRELATION = CorrelationConfig()


class DeviceContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the correlator needs to know about the device behind a hit.

    ``ancestors`` runs county, town, village (the basic grid's ``Grid.ancestors``);
    ``members`` are the people an event may be assigned to (the grid's, optionally its
    ancestors' too), as the workflow names them.
    """

    device_id: str
    site: str = ""
    grid_code: str | None = None
    ancestors: tuple[str, ...] = ()
    location: Location = msgspec.field(default_factory=Location)
    members: tuple[Assignee, ...] = ()

    @classmethod
    def from_registry(
        cls, device: Device, grid: Grid | None, members: Iterable[Member] | None = None
    ) -> DeviceContext:
        """From the registry's device and its basic grid; ``members`` default to the grid's."""
        people = members if members is not None else (grid.members if grid else ())
        return cls(
            device_id=device.device_id,
            site=device.site.strip(),
            grid_code=grid.code if grid else device.grid_code,
            ancestors=grid.ancestors if grid else (),
            location=Location(lat=device.lat, lon=device.lon, address=device.address),
            members=as_assignees(people),
        )


_LADDER_ROLES = {r.value for r in LADDER}


def as_assignees(members: Iterable[Member]) -> tuple[Assignee, ...]:
    """Registry members as workflow assignees; roles off the ladder (``city_department``)
    are left out, since the workflow does not assign to them."""
    return tuple(
        Assignee(m.id, Role(m.role.value)) for m in members if m.role.value in _LADDER_ROLES
    )


class EventChange(msgspec.Struct, frozen=True, kw_only=True):
    """One event changed by one hit: the event as it is now, the history to append and the
    CloudEvents change to publish (None: nothing for subscribers).

    ``severity_before`` is set when the severity rose (``cloudevent`` is then
    ``escalated``), with ``reasons`` naming the rules; ``linked`` marks a hit of another
    category recorded in this event; ``suggested_assignee`` comes with ``opened``.
    """

    kind: ChangeKind
    event: GridEvent
    cloudevent: CloudEventType | None
    history: tuple[HistoryEntry, ...] = ()
    severity_before: Severity | None = None
    reasons: tuple[str, ...] = ()
    linked: bool = False
    suggested_assignee: Assignee | None = None


def key_for(
    category: Category, hit_type: str, device: DeviceContext, config: CorrelationConfig
) -> str:
    """The correlation key of a hit of ``category``/``hit_type`` from ``device``."""
    scope = config.scopes.get(category, Scope.DEVICE)
    site = device.site.strip()
    if scope is Scope.SITE and site:
        return f"{category}:site:{site}"
    if scope is Scope.DEVICE_TYPE:
        return f"{category}:device_type:{hit_type}:{device.device_id}"
    return f"{category}:device:{device.device_id}"


def _site_key(category: Category, device: DeviceContext, config: CorrelationConfig) -> str | None:
    site = device.site.strip()
    if not site or config.scopes.get(category) is not Scope.SITE:
        return None
    return f"{category}:site:{site}"


def _linking(category: Category, config: CorrelationConfig) -> list[Category]:
    """Categories whose events record hits of ``category``."""
    return sorted(c for c, others in config.links.items() if category in others)


def lookup_keys(
    hit: Hit, device: DeviceContext, config: CorrelationConfig = DEFAULT_CORRELATION
) -> tuple[str, ...]:
    """The keys whose holders ``correlate`` needs for ``hit``: its own first, then the site
    keys of the categories it links with, either way."""
    keys = [key_for(hit.category, hit.type, device, config)]
    partners = [*_linking(hit.category, config), *sorted(config.links.get(hit.category, ()))]
    for category in partners:
        key = _site_key(category, device, config)
        if key is not None and key not in keys:
            keys.append(key)
    return tuple(keys)


def absorbs(event: GridEvent, ts: float, config: CorrelationConfig = DEFAULT_CORRELATION) -> bool:
    """Whether a raised hit at device time ``ts`` with the event's key joins it."""
    if event.correlation_key is None or not event.is_open:
        return False
    if config.hold_while_active and event.active_conditions:
        return True
    return ts - event.last_seen <= config.window_s


def correlate(
    hit: Hit,
    device: DeviceContext,
    open_events: Mapping[str, GridEvent],
    now: datetime,
    config: CorrelationConfig = DEFAULT_CORRELATION,
    rules: SeverityRules = DEFAULT_RULES,
    *,
    entropy: int,
    workflow: WorkflowConfig = DEFAULT_CONFIG,
) -> list[EventChange]:
    """What ``hit`` changes, given the events holding the keys of ``lookup_keys``.

    ``now`` (aware, server time) dates the workflow and the id of an opened event;
    ``entropy`` is 80 random bits for that id. Returns the changes in the order to persist.
    """
    require_aware(now)
    if hit.device_id != device.device_id:
        raise ValueError(f"hit of {hit.device_id} with the context of {device.device_id}")
    for given, event in open_events.items():
        if event.correlation_key != given:
            raise ValueError(f"event {event.id} was given for key {given!r} it does not hold")
    key = key_for(hit.category, hit.type, device, config)
    holder = open_events.get(key)
    ctx = _Ctx(now, config, rules, workflow)
    if not hit.raised:
        return ctx.cleared(holder, hit)
    changes: list[EventChange] = []
    if holder is not None and holder.has_applied(hit):
        pass  # a replay: nothing of this event changes (links check for themselves)
    elif holder is not None and absorbs(holder, hit.ts, config):
        changes.append(ctx.joined(holder, hit))
    elif holder is not None and not holder.is_open and hit.ts <= holder.last_seen:
        changes.append(ctx.late(holder, hit))
    else:
        event_id = new_event_id(now.timestamp(), entropy)
        if holder is not None:
            changes.append(ctx.released(holder, event_id))
        partners = [
            e
            for c in sorted(config.links.get(hit.category, ()))
            if (k := _site_key(c, device, config)) and (e := open_events.get(k)) is not None
        ]
        changes.append(ctx.opened(event_id, key, hit, device, partners))
    for category in _linking(hit.category, config):
        link_key = _site_key(category, device, config)
        target = open_events.get(link_key) if link_key else None
        if target is not None and absorbs(target, hit.ts, config) and not target.has_applied(hit):
            changes.append(ctx.linked(target, hit))
    return changes


def _add(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return items if item in items else (*items, item)


class _Ctx:
    """The settings of one ``correlate`` call, so the steps need not pass them around."""

    def __init__(
        self,
        now: datetime,
        config: CorrelationConfig,
        rules: SeverityRules,
        workflow: WorkflowConfig,
    ) -> None:
        self.now = now
        self.config = config
        self.rules = rules
        self.workflow = workflow

    def evidence(self, kept: tuple[Evidence, ...], *new: Evidence) -> tuple[Evidence, ...]:
        return (*kept, *new)[-self.config.evidence_limit :]

    def opened(
        self,
        event_id: str,
        key: str,
        hit: Hit,
        device: DeviceContext,
        partners: list[GridEvent],
    ) -> EventChange:
        types: tuple[str, ...] = (hit.type,)
        imported: list[Evidence] = []
        for partner in partners:
            if not absorbs(partner, hit.ts, self.config):
                continue
            for t in partner.types:
                types = _add(types, t)
            latest = {e.condition_key: e for e in partner.evidence if e.own_raise}
            imported.extend(msgspec.structs.replace(e, linked=True) for e in latest.values())
        base = self.rules.hit_severity(hit)
        escalated, names = self.rules.escalation(hit.category, (hit.device_id,), types)
        severity = highest(base, escalated) if escalated else base
        reason = f"{hit.type} from {hit.device_id}"
        if escalated and severity is not base:
            reason += f"; {severity.value}: {', '.join(names)}"
        ws, entry = open_event(
            severity, hit.category, hit.type, self.now, reason=reason, config=self.workflow
        )
        event = GridEvent(
            id=event_id,
            correlation_key=key,
            grid_code=device.grid_code,
            ancestors=device.ancestors,
            category=hit.category,
            type=hit.type,
            severity=ws.severity,
            state=ws.state,
            site=device.site.strip(),
            location=device.location,
            device_ids=(hit.device_id,),
            types=types,
            active_conditions=(hit.condition_key,),
            first_seen=hit.ts,
            last_seen=hit.ts,
            alarm_count=1,
            evidence=self.evidence(tuple(imported), Evidence.from_hit(hit)),
            workflow=ws,
        )
        return EventChange(
            kind="opened",
            event=event,
            cloudevent="opened",
            history=(entry,),
            reasons=names if severity is not base else (),
            suggested_assignee=pick_assignee(device.members),
        )

    def joined(self, holder: GridEvent, hit: Hit) -> EventChange:
        # The event is named after its most severe kind of hit: an anomaly that turns into
        # a residual-current alarm is a residual-current event.
        stronger = rank(self.rules.hit_severity(hit)) > rank(holder.severity)
        draft = msgspec.structs.replace(
            holder,
            type=hit.type if stronger else holder.type,
            workflow=(
                msgspec.structs.replace(holder.workflow, type=hit.type)
                if stronger
                else holder.workflow
            ),
            device_ids=_add(holder.device_ids, hit.device_id),
            types=_add(holder.types, hit.type),
            active_conditions=_add(holder.active_conditions, hit.condition_key),
            first_seen=min(holder.first_seen, hit.ts),
            last_seen=max(holder.last_seen, hit.ts),
            alarm_count=holder.alarm_count + 1,
            evidence=self.evidence(holder.evidence, Evidence.from_hit(hit)),
            version=holder.version + 1,
        )
        return self._assessed(draft, hit, linked=False)

    def late(self, holder: GridEvent, hit: Hit) -> EventChange:
        """A hit from before the end of a finished incident: recorded on it, for people to
        see, instead of opening a new event."""
        ws, entry = apply(
            holder.workflow,
            Action.COMMENT,
            SYSTEM_ACTOR,
            self.now,
            reason=f"late {hit.type} from {hit.device_id} (device time not after the event's "
            f"last hit): recorded on the {holder.state.value} event, no new event opened",
            config=self.workflow,
        )
        event = msgspec.structs.replace(
            holder,
            device_ids=_add(holder.device_ids, hit.device_id),
            types=_add(holder.types, hit.type),
            first_seen=min(holder.first_seen, hit.ts),
            alarm_count=holder.alarm_count + 1,
            evidence=self.evidence(holder.evidence, Evidence.from_hit(hit)),
            workflow=ws,
            version=holder.version + 1,
        )
        return EventChange(kind="updated", event=event, cloudevent="updated", history=(entry,))

    def linked(self, target: GridEvent, hit: Hit) -> EventChange:
        draft = msgspec.structs.replace(
            target,
            types=_add(target.types, hit.type),
            evidence=self.evidence(target.evidence, Evidence.from_hit(hit, linked=True)),
            version=target.version + 1,
        )
        return self._assessed(draft, None, linked=True)

    def _assessed(self, draft: GridEvent, hit: Hit | None, *, linked: bool) -> EventChange:
        severity, reasons = self.rules.assess(draft, hit)
        if severity is draft.severity:
            return EventChange(kind="updated", event=draft, cloudevent="updated", linked=linked)
        ws, entry = raise_severity(
            draft.workflow, severity, self.now, reason=", ".join(reasons), config=self.workflow
        )
        return EventChange(
            kind="updated",
            event=msgspec.structs.replace(draft, severity=ws.severity, workflow=ws),
            cloudevent="escalated",
            history=(entry,),
            severity_before=draft.severity,
            reasons=reasons,
            linked=linked,
        )

    def released(self, holder: GridEvent, successor: str) -> EventChange:
        event = msgspec.structs.replace(holder, correlation_key=None, version=holder.version + 1)
        if not holder.is_open:
            return EventChange(kind="released", event=event, cloudevent=None)
        ws, entry = apply(
            holder.workflow,
            Action.COMMENT,
            SYSTEM_ACTOR,
            self.now,
            reason=f"no hit for {self.config.window}: new hits with key "
            f"{holder.correlation_key} go to {successor}",
            config=self.workflow,
        )
        return EventChange(
            kind="released",
            event=msgspec.structs.replace(event, workflow=ws),
            cloudevent="updated",
            history=(entry,),
        )

    def cleared(self, holder: GridEvent | None, hit: Hit) -> list[EventChange]:
        if (
            holder is None
            or not holder.is_open
            or hit.condition_key not in holder.active_conditions
            or holder.has_applied(hit)
        ):
            return []
        draft = msgspec.structs.replace(
            holder,
            active_conditions=tuple(c for c in holder.active_conditions if c != hit.condition_key),
            last_seen=max(holder.last_seen, hit.ts),
            evidence=self.evidence(holder.evidence, Evidence.from_hit(hit)),
            version=holder.version + 1,
        )
        if draft.active_conditions:
            return [EventChange(kind="cleared", event=draft, cloudevent="updated")]
        ws, entry = on_condition_cleared(
            draft.workflow,
            self.now,
            reason=f"{hit.type} cleared on {hit.device_id}: no condition of the event is raised",
            config=self.workflow,
        )
        event = msgspec.structs.replace(draft, state=ws.state, workflow=ws)
        return [
            EventChange(
                kind="cleared",
                event=event,
                cloudevent="closed" if ws.state.terminal else "updated",
                history=(entry,),
            )
        ]
