"""Bad payloads a device (or a broken gateway) sends, by name, each with the rejection
reason gridwatch gives it with its default settings.

A scenario lists the kinds it wants (``garbage = ["not_json", "out_of_range"]``), and each
becomes one message, in that order. The kinds that are one of the device's own messages gone
wrong carry its next ``seq`` and its clock's ``ts``, as a real device's would; the others
carry no seq. Every payload is a pure function of the device, the time and the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

import orjson

from devices.messages import Kind, RejectReason
from devices.profiles import get_profile
from simulators.device_sim import DeviceSim
from simulators.fleet import FleetModel, Outgoing

DAY_S = 86_400.0
DEFAULT_OVERSIZE_BYTES = 100_000  # above ingest's 64 KiB default, below the broker's 256 KiB
FUTURE_S = DAY_S  # far beyond ingest.max_future_skew_s (600 s by default)
PAST_S = 400 * DAY_S  # older than any readings retention gridwatch is likely to keep


_NORMAL = {"smoke_obscuration_db_m": 0.01, "residual_current_ma": 150.0, "pressure_mpa": 0.3}


@dataclass(frozen=True, slots=True)
class Garbage:
    """One request for a bad payload: the kind, and the size for ``oversize``."""

    model: FleetModel
    sim: DeviceSim
    t: float
    step: int
    size: int

    def body(self, *, shift_s: float = 0.0) -> dict[str, object]:
        """``ts`` by the device's clock (moved by ``shift_s``) and the device's next seq."""
        offset = self.sim.clock.offset_at(self.t) + shift_s
        return {"ts": self.model.config.stamp_ms(self.t, offset), "seq": self.sim.next_seq()}

    def metric(self) -> tuple[str, float, float]:
        """The device type's first metric, a normal value and an impossible one."""
        spec = next(iter(get_profile(self.sim.device.type).metrics.values()))
        normal = _NORMAL.get(spec.name, round((spec.minimum + spec.maximum) / 4, 3))
        return spec.name, normal, spec.maximum * 10 + 1

    def out(
        self, payload: bytes, kind: Kind = Kind.TELEMETRY, topic: str | None = None
    ) -> Outgoing:
        return self.model.raw(self.sim, kind, self.t, payload, step=self.step, topic=topic)

    def telemetry(self, values: dict[str, object], **extra: object) -> bytes:
        return orjson.dumps({**self.body(), "values": values, **extra})


Builder = Callable[[Garbage], Outgoing]


@dataclass(frozen=True, slots=True)
class GarbageKind:
    name: str
    reason: RejectReason  # what gridwatch (default settings) answers
    what: str
    build: Builder


def _not_json(g: Garbage) -> Outgoing:
    return g.out(b"\x00\x13\xffgarbled frame\xfe")


def _truncated(g: Garbage) -> Outgoing:
    name, value, _ = g.metric()
    whole = g.telemetry({name: value})
    return g.out(whole[: len(whole) // 2])


def _empty(g: Garbage) -> Outgoing:
    return g.out(b"")


def _binary(g: Garbage) -> Outgoing:
    rng = Random(f"{g.model.config.seed}:{g.sim.device_id}:{g.t}:garbage")
    return g.out(b"\xff" + rng.randbytes(31))


def _not_object(g: Garbage) -> Outgoing:
    return g.out(b"[1, 2, 3]")


def _wrong_types(g: Garbage) -> Outgoing:
    name, _, _ = g.metric()
    return g.out(orjson.dumps({"ts": "yesterday", "values": {name: "high"}}))


def _missing_values(g: Garbage) -> Outgoing:
    return g.out(orjson.dumps(g.body()))


def _unknown_metric(g: Garbage) -> Outgoing:
    return g.out(g.telemetry({"flux_capacitor_gw": 1.21}))


def _out_of_range(g: Garbage) -> Outgoing:
    name, _, impossible = g.metric()
    return g.out(g.telemetry({name: impossible}))


def _shifted(shift_s: float) -> Builder:
    def build(g: Garbage) -> Outgoing:
        name, value, _ = g.metric()
        return g.out(orjson.dumps({**g.body(shift_s=shift_s), "values": {name: value}}))

    return build


def _device_mismatch(g: Garbage) -> Outgoing:
    name, value, _ = g.metric()
    return g.out(g.telemetry({name: value}, device_id=f"{g.sim.device_id}-OTHER"))


def _unknown_event(g: Garbage) -> Outgoing:
    return g.out(orjson.dumps({**g.body(), "event": "explode"}), Kind.EVENT)


def _oversize(g: Garbage) -> Outgoing:
    name, value, _ = g.metric()
    head = g.telemetry({name: value}, pad="")
    padding = "x" * max(0, g.size - len(head))
    return g.out(head[:-2] + padding.encode() + head[-2:])


def _bad_topic(g: Garbage) -> Outgoing:
    name, value, _ = g.metric()
    topic = f"{g.model.topics.root}/up/{g.sim.device_id}/selfie"
    payload = orjson.dumps({"ts": g.model.config.stamp_ms(g.t), "values": {name: value}})
    return g.out(payload, topic=topic)


def _unknown_device(g: Garbage) -> Outgoing:
    name, value, _ = g.metric()
    topic = g.model.topics.build(f"{g.sim.device_id}-GHOST", Kind.TELEMETRY)
    payload = orjson.dumps({"ts": g.model.config.stamp_ms(g.t), "values": {name: value}})
    return g.out(payload, topic=topic)


_R = RejectReason
GARBAGE_KINDS: dict[str, GarbageKind] = {
    kind.name: kind
    for kind in (
        GarbageKind("not_json", _R.NOT_JSON, "bytes that are not JSON", _not_json),
        GarbageKind("truncated", _R.NOT_JSON, "a telemetry message cut in half", _truncated),
        GarbageKind("empty", _R.NOT_JSON, "an empty payload", _empty),
        GarbageKind("binary", _R.NOT_JSON, "32 random bytes", _binary),
        GarbageKind("not_object", _R.BAD_PAYLOAD, "JSON that is not an object", _not_object),
        GarbageKind("wrong_types", _R.BAD_PAYLOAD, "text where numbers belong", _wrong_types),
        GarbageKind("missing_values", _R.BAD_PAYLOAD, "telemetry without values",
                    _missing_values),
        GarbageKind("unknown_metric", _R.UNKNOWN_METRIC, "a metric no profile has",
                    _unknown_metric),
        GarbageKind("out_of_range", _R.OUT_OF_RANGE, "ten times the metric's physical maximum",
                    _out_of_range),
        GarbageKind("future_timestamp", _R.FUTURE_TIMESTAMP, "ts a day ahead",
                    _shifted(FUTURE_S)),
        GarbageKind("too_old", _R.TOO_OLD, "ts 400 days back", _shifted(-PAST_S)),
        GarbageKind("device_mismatch", _R.DEVICE_MISMATCH, "a payload naming another device",
                    _device_mismatch),
        GarbageKind("unknown_event", _R.UNKNOWN_EVENT, "an event no profile has",
                    _unknown_event),
        GarbageKind("oversize", _R.OVERSIZE, "a telemetry message padded to `size` bytes",
                    _oversize),
        GarbageKind("bad_topic", _R.BAD_TOPIC, "a topic whose last level is no message kind",
                    _bad_topic),
        GarbageKind("unknown_device", _R.UNKNOWN_DEVICE, "a topic naming an unregistered device",
                    _unknown_device),
    )
}
"""Every kind a scenario may ask for, by name, in the order the README lists them."""


def make_garbage(
    model: FleetModel, sim: DeviceSim, t: float, kind: str, *, step: int, size: int
) -> Outgoing:
    return GARBAGE_KINDS[kind].build(Garbage(model, sim, t, step, size))
