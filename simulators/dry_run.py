"""A dry run: what a live run would publish, in its order, without a broker or any waiting.

It is the live runner itself on a :class:`~simulators.fleet_runner.VirtualClock` with a
publisher that only records, so the two cannot drift apart: a live run that keeps up with
its schedule sends exactly these messages, in this order. The JSON-lines form has one
message a line::

    {"n": 1, "t": 5.0, "device": "SD-1", "kind": "event", "topic": "gridwatch/v1/up/SD-1/event",
     "qos": 1, "retain": false, "step": 1, "payload": "{\\"ts\\":…}"}

``payload`` is the payload as text when it is UTF-8, else ``payload_base64``; a message held
through an outage also has ``buffered_at`` (when it was made).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from simulators.fleet import FleetModel, Outgoing
from simulators.fleet_runner import RunLimits, RunReport, VirtualClock, run_fleet


class _NullPublisher:
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        return None

    def flush(self, timeout: float = 60.0) -> bool:
        return True


def dry_run(
    model: FleetModel,
    *,
    limits: RunLimits | None = None,
    offline_on_stop: bool = True,
) -> tuple[list[Outgoing], RunReport]:
    """Every message the run publishes (closing statuses included), and its report.

    The rate limit is left out: it changes when messages go out, never which or in what
    order. A run without an end (regular traffic, no duration or message limit) never ends:
    the caller must give one.
    """
    limits = limits or RunLimits()
    unlimited = RunLimits(duration=limits.duration, messages=limits.messages)
    clock = VirtualClock()
    sent: list[Outgoing] = []
    report = run_fleet(
        model,
        _NullPublisher(),
        limits=unlimited,
        offline_on_stop=offline_on_stop,
        on_sent=sent.append,
        clock=clock,
        sleep=clock.sleep,
    )
    return sent, report


def record(n: int, out: Outgoing, qos: int) -> dict[str, Any]:
    """One message as a JSON-able line."""
    line: dict[str, Any] = {
        "n": n,
        "t": out.t,
        "device": out.device_id,
        "kind": out.kind.value,
        "topic": out.topic,
        "qos": qos,
        "retain": out.retain,
        "step": out.step,
    }
    if out.buffered_at is not None:
        line["buffered_at"] = out.buffered_at
    try:
        line["payload"] = out.payload.decode("utf-8")
    except UnicodeDecodeError:
        line["payload_base64"] = base64.b64encode(out.payload).decode("ascii")
    return line


def write_jsonl(messages: Iterable[Outgoing], handle: IO[bytes], *, qos: int) -> int:
    count = 0
    for count, out in enumerate(messages, start=1):
        handle.write(orjson.dumps(record(count, out, qos)) + b"\n")
    return count


def payload_of(line: dict[str, Any]) -> bytes:
    """The payload bytes of a line :func:`record` wrote."""
    if "payload_base64" in line:
        return base64.b64decode(line["payload_base64"])
    text: str = line["payload"]
    return text.encode("utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as handle:
        return [orjson.loads(raw) for raw in handle if raw.strip()]
