"""The outage spool (ingest/spool.py) and provisional detection (ingest/provisional.py)."""

from __future__ import annotations

from pathlib import Path

from alerts.correlation import DeviceContext
from alerts.provisional import envelope, from_envelope, provisional_alerts
from detectors.base import Hit
from detectors.runtime import DetectionRuntime
from devices.codecs import get_codec
from devices.messages import (
    DeviceEvent,
    Heartbeat,
    Reading,
    Rejection,
    RejectReason,
    StatusChange,
)
from devices.profiles import get_profile
from ingest.provisional import ProvisionalDetection, accepted
from ingest.spool import DiskSpool, decode_batch, encode_batch, merge
from ingest.validate import KnownDevice
from outputs.provisional_relay import provisional_topic
from storage.ingest_writer import IngestBatch

T0 = 1_790_000_000.0


def batch_of(n: int, *, at: float = T0) -> IngestBatch:
    return IngestBatch(
        readings=[
            Reading(f"WP-{i}", at + i, i, {"pressure_mpa": 0.3 + i / 100}, at + i + 0.5)
            for i in range(n)
        ],
        heartbeats=[Heartbeat("SD-1", at, 7, {"battery_pct": 88.0}, at + 0.1)],
        events=[DeviceEvent("SD-1", at + 1, 8, "alarm", {"zone": "厨房"}, at + 1.1)],
        statuses=[StatusChange("SD-2", "offline", at + 2, at + 2.1)],
        rejections=[
            Rejection(
                "gridwatch/v1/up/X/telemetry",
                "X",
                b"\x00\xff",
                RejectReason.NOT_JSON,
                "not JSON",
                at,
            )
        ],
        duplicates=3,
    )


def test_a_batch_survives_the_disk_unchanged() -> None:
    batch = batch_of(5)
    assert decode_batch(encode_batch(batch)) == batch


def test_batches_come_back_oldest_first_also_after_a_restart(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    first, second = batch_of(2), batch_of(3, at=T0 + 100)
    spool.append(encode_batch(first), 2)
    spool.append(encode_batch(second), 3)
    reopened = DiskSpool(tmp_path, 10_000_000)  # a worker that restarts finds them
    assert len(reopened) == 2 and reopened.bytes == spool.bytes
    item = reopened.oldest()
    assert item is not None and item.batch == first
    reopened.remove(item)
    item = reopened.oldest()
    assert item is not None and item.batch == second
    reopened.append(encode_batch(first), 2)  # numbering goes on after the last file
    reopened.remove(item)
    last = reopened.oldest()
    assert last is not None and last.batch == first and last.path.name > item.path.name
    reopened.remove(last)
    assert reopened.empty() and reopened.bytes == 0 and not list(tmp_path.glob("*.batch"))


def test_a_half_written_file_is_discarded_and_a_damaged_one_set_aside(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    spool.append(encode_batch(batch_of(1)), 1)
    good = spool.append(encode_batch(batch_of(2)), 2)
    damaged = next(spool.paths())
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "0000000000000009.tmp").write_bytes(b"half")  # never renamed: not acknowledged
    reopened = DiskSpool(tmp_path, 10_000_000)
    assert not list(tmp_path.glob("*.tmp"))
    item = reopened.oldest()
    assert item is not None and item.path == good and item.batch == batch_of(2)
    assert reopened.damaged == 1 and (tmp_path / "damaged" / damaged.name).exists()


def test_the_spool_is_bounded(tmp_path: Path) -> None:
    data = encode_batch(batch_of(10))
    spool = DiskSpool(tmp_path, 2 * len(data))
    assert spool.has_room(len(data))
    spool.append(data, 10)
    spool.append(data, 10)
    assert not spool.has_room(len(data)) and spool.spooled_messages == 20


def _known() -> dict[str, KnownDevice]:
    codec = get_codec("canonical")
    return {
        "SD-1": KnownDevice("SD-1", get_profile("smoke_detector"), codec),
        "WP-0": KnownDevice("WP-0", get_profile("water_pressure_sensor"), codec),
    }


def test_detection_goes_on_over_spooled_batches_without_touching_the_real_state() -> None:
    known = _known()
    runtime = DetectionRuntime()
    runtime.adopt({"SD-1": known["SD-1"].profile}, {}, T0)
    before = dict(runtime.states)
    published: list[list[Hit]] = []
    outage = ProvisionalDetection(
        lambda: runtime, lambda: known, lambda h, _now: published.append(h)
    )
    alarm = IngestBatch(events=[DeviceEvent("SD-1", T0 + 5, 1, "alarm", {}, T0 + 5.1)])
    outage.spooled(alarm, T0 + 6)
    assert outage.active
    assert [(h.device_id, h.type, h.raised) for h in published[0]] == [
        ("SD-1", "smoke_alarm", True)
    ]
    outage.spooled(alarm, T0 + 7)  # the same condition is already raised in the fork
    assert len(published) == 1
    assert runtime.states == before  # the spool is judged for real when it is written
    outage.recovered()
    assert not outage.active
    outage.spooled(alarm, T0 + 8)  # a new outage forks again from the real state
    assert len(published) == 2


def test_devices_going_silent_during_an_outage_are_found_on_the_clock() -> None:
    known = _known()
    runtime = DetectionRuntime()
    published: list[Hit] = []
    outage = ProvisionalDetection(lambda: runtime, lambda: known, lambda h, _n: published.extend(h))
    runtime.adopt({"WP-0": known["WP-0"].profile}, {}, T0)  # heard before the outage
    outage.tick(T0 + 60)  # the outage starts on the clock, before any message
    assert outage.active and not published
    outage.tick(T0 + 7 * 24 * 3600)
    assert [(h.device_id, h.type) for h in published] == [("WP-0", "device_offline")]


def test_accepted_messages_are_in_arrival_order() -> None:
    assert [m.received_at for m in accepted(batch_of(2))] == sorted(
        m.received_at for m in accepted(batch_of(2))
    )


def test_a_provisional_alert_names_its_grid_and_goes_under_it() -> None:
    runtime = DetectionRuntime()
    known = _known()
    runtime.adopt({"SD-1": known["SD-1"].profile}, {}, T0)
    done = runtime.run(
        [DeviceEvent("SD-1", T0, 1, "alarm", {}, T0)], {"SD-1": known["SD-1"].profile}, T0
    )
    place = DeviceContext(device_id="SD-1", site="幸福小区3栋", grid_code="G-001",
                          ancestors=("C1", "T1", "V1"))  # fmt: skip
    [alert] = provisional_alerts(done.hits, {"SD-1": place}, T0 + 1, "gw-1")
    assert (alert.grid_code, alert.recorded, alert.severity) == ("G-001", False, "red")
    assert provisional_topic("gridwatch/v1", alert) == "gridwatch/v1/provisional/C1/T1/V1/G-001"
    env, back = from_envelope(envelope(alert))
    assert back == alert and env.type == "gridwatch.provisional.raised"
    assert env.source == "/gridwatch/C1" and env.subject == "SD-1"
    [unplaced] = provisional_alerts(done.hits, {}, T0 + 1, "gw-1")
    assert provisional_topic("gridwatch/v1", unplaced) == "gridwatch/v1/provisional/unplaced"


def test_small_spooled_batches_are_written_back_together_in_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    batches = [batch_of(n, at=T0 + 100 * n) for n in (1, 2, 3, 4)]
    for b in batches:
        spool.append(encode_batch(b), len(b))
    sizes = [len(b) + b.duplicates for b in batches]
    run = spool.oldest_run(sizes[0] + sizes[1] + sizes[2] - 1)  # the third does not fit
    assert [item.batch for item in run] == batches[:2]
    merged = merge([item.batch for item in run])
    assert merged.readings == batches[0].readings + batches[1].readings
    assert len(merged) == len(batches[0]) + len(batches[1])
    assert merged.duplicates == 6
    assert [i.batch for i in spool.oldest_run(1)] == batches[:1]  # always at least one


def test_patrol_deadlines_wait_for_the_database() -> None:
    import msgspec

    known = _known()
    runtime = DetectionRuntime()
    runtime.adopt({"SD-1": known["SD-1"].profile}, {}, T0)
    done = runtime.run(
        [DeviceEvent("SD-1", T0, 1, "alarm", {}, T0)], {"SD-1": known["SD-1"].profile}, T0
    )
    overdue = msgspec.structs.replace(done.hits[0], type="patrol_overdue")
    published: list[Hit] = []
    outage = ProvisionalDetection(lambda: runtime, lambda: known, lambda h, _n: published.extend(h))
    outage._found([overdue, done.hits[0]], T0)
    assert [h.type for h in published] == ["smoke_alarm"]
