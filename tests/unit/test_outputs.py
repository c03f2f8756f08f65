"""Outputs without I/O: envelopes, topics, filters, fan-out, retry timing, signatures,
subscription requests, metrics rendering, the stream's fan-out to client queues, and the
worker supervisor."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from random import Random
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from standardwebhooks import Webhook, WebhookVerificationError

from api.metrics import DatabaseFigures, families
from api.stream import LiveTail, StreamOptions, frame
from api.subscriptions_api import parse_request
from outputs import CrashBudgetExceeded, LatencyHistogram, supervise
from outputs.cloudevents import CONTENT_TYPE, envelope, message_id, subscription_disabled
from outputs.log_reader import EventFilter, LogRow
from outputs.mqtt_feed import event_topic
from outputs.webhook_policy import Subscription, fan_out_pairs, retry_after_s, retry_delay
from outputs.webhook_signing import check_secret, new_secret, sign_headers

AT = datetime(2026, 11, 22, 8, 0, 0, 123456, tzinfo=UTC)
COUNTY, TOWN, VILLAGE, GRID = "440981", "440981001", "440981001005", "440981001005-03"
PAYLOAD = orjson.dumps({"id": "GE01", "category": "fire", "severity": "red", "名": "东村"})


def row(
    seq: int = 7,
    *,
    grid: str | None = GRID,
    ancestors: tuple[str, ...] = (COUNTY, TOWN, VILLAGE),
    severity: str = "red",
    category: str = "fire",
    change: str = "opened",
) -> LogRow:
    return LogRow(seq, 900, "GE01", change, AT, grid, ancestors, severity, category, PAYLOAD)


# --- CloudEvents and topics ----------------------------------------------------------------


def test_envelope_is_a_cloudevent_with_the_grid_event_as_data() -> None:
    ce = orjson.loads(envelope(row()))
    assert ce == {
        "specversion": "1.0",
        "id": "GE01:7",
        "source": f"/gridwatch/{COUNTY}",
        "type": "gridwatch.event.opened",
        "subject": "GE01",
        "time": "2026-11-22T08:00:00.123456Z",
        "datacontenttype": "application/json",
        "seq": 7,
        "data": orjson.loads(PAYLOAD),
    }
    assert envelope(row()) == envelope(row())  # a retry sends the same bytes
    assert message_id(row(8)) != message_id(row(7))


def test_an_unplaced_event_has_the_fallback_source() -> None:
    ce = orjson.loads(envelope(row(grid=None, ancestors=())))
    assert ce["source"] == "/gridwatch/unplaced"


def test_topics_follow_the_grid_tree_with_a_fallback() -> None:
    root = "gridwatch/v1"
    assert event_topic(root, row()) == f"{root}/events/{COUNTY}/{TOWN}/{VILLAGE}/{GRID}"
    assert event_topic(root + "/", row()) == f"{root}/events/{COUNTY}/{TOWN}/{VILLAGE}/{GRID}"
    assert event_topic(root, row(grid=None, ancestors=())) == f"{root}/events/unplaced"
    # placed on a village: a shorter topic, still under the town's '#'
    assert event_topic(root, row(grid=VILLAGE, ancestors=(COUNTY, TOWN))) == (
        f"{root}/events/{COUNTY}/{TOWN}/{VILLAGE}"
    )
    for bad in ("a/b", "a+b", "#", ""):
        assert event_topic(root, row(grid=bad)) == f"{root}/events/unplaced"


def test_the_disabled_notice_is_a_cloudevent_too() -> None:
    notice_id, body = subscription_disabled(5, AT, {"reason": "x"})
    ce = orjson.loads(body)
    assert ce["type"] == "gridwatch.subscription.disabled" and ce["id"] == notice_id
    assert ce["subject"] == "5" and ce["data"] == {"reason": "x"} and "seq" not in ce


# --- filters and fan-out -------------------------------------------------------------------


def test_filters_match_subtree_severity_category_and_change() -> None:
    r = row()
    assert EventFilter().matches(r)
    for grid in (COUNTY, TOWN, VILLAGE, GRID):
        assert EventFilter(grid=grid).matches(r)
    assert not EventFilter(grid="440981002").matches(r)
    assert not EventFilter(grid=TOWN).matches(row(grid=None, ancestors=()))
    assert EventFilter(severities=frozenset({"red", "orange"})).matches(r)
    assert not EventFilter(severities=frozenset({"blue"})).matches(r)
    assert not EventFilter(categories=frozenset({"water"})).matches(r)
    assert EventFilter(changes=frozenset({"opened"})).matches(r)
    assert not EventFilter(changes=frozenset({"closed"})).matches(r)


def test_fan_out_respects_each_subscriptions_filters_and_start() -> None:
    subs = [
        Subscription(1, 0, EventFilter()),
        Subscription(2, 0, EventFilter(severities=frozenset({"blue"}))),
        Subscription(3, 7, EventFilter(grid=TOWN)),  # created after seq 7
    ]
    rows = [row(7), row(8), row(9, severity="blue", grid=None, ancestors=())]
    assert fan_out_pairs(rows, subs) == [(1, 7), (1, 8), (3, 8), (1, 9), (2, 9)]


# --- retries and signatures ----------------------------------------------------------------


def test_retry_delays_grow_exponentially_with_full_jitter_and_never_overflow() -> None:
    rng = Random(4)
    for failures in range(1, 12):
        ceiling = min(60.0, 1.0 * 2 ** (failures - 1))
        delays = [retry_delay(failures, 1.0, 60.0, rng) for _ in range(200)]
        assert all(1.0 <= d <= ceiling for d in delays)
        if ceiling > 2:
            assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed
    assert 1.0 <= retry_delay(10**6, 1.0, 60.0, rng) <= 60.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("120", AT) == 120.0
    now = AT.replace(microsecond=0)
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_s(None, AT) is None and retry_after_s("soon", AT) is None


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and check_secret(secret) == secret
    assert len(base64.b64decode(secret[6:])) == 32
    for bad in ("plain", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            check_secret(bad)


def test_signed_headers_verify_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    body = envelope(row())
    now = datetime.now(UTC)
    headers = sign_headers(Webhook(secret), message_id(row()), now, body)
    assert headers["webhook-id"] == "GE01:7" and headers["content-type"] == CONTENT_TYPE
    assert Webhook(secret).verify(body, headers)["id"] == "GE01:7"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"red", b"blue"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


# --- subscription requests -----------------------------------------------------------------


def test_a_subscription_request_is_checked_field_by_field() -> None:
    ok = parse_request(
        orjson.dumps(
            {"url": "https://hooks.example/gw", "filters": {"grid": TOWN, "severity": ["red"]}}
        )
    )
    assert ok.filters.grid == TOWN and ok.filters.severity == ["red"] and ok.secret is None
    bad = [
        {"url": "ftp://x/y"},
        {"url": "/relative"},
        {"url": "https://x", "filters": {"severity": ["purple"]}},
        {"url": "https://x", "filters": {"change": []}},
        {"url": "https://x", "filters": {"colour": ["red"]}},
        {"url": "https://x", "secret": "not-whsec"},
        {"url": "https://x", "extra": 1},
        {},
    ]
    for body in bad:
        with pytest.raises(web.HTTPBadRequest) as caught:
            parse_request(orjson.dumps(body))
        assert orjson.loads(caught.value.text or "{}")["error"] == "bad_request", body


# --- metrics -------------------------------------------------------------------------------



def scrape(health: dict[str, Any], figures: Any = None, latency: list[Any] | None = None) -> str:
    """The exposition text of one scrape of ``families`` over this health report."""
    registry = CollectorRegistry()

    class Once:
        def collect(self) -> Any:
            return families(health, figures, latency or [])

    registry.register(Once())
    return generate_latest(registry).decode()


def test_metrics_render_the_contracts_series_from_health_and_the_database() -> None:
    latency = LatencyHistogram()
    for s in (0.004, 0.02, 0.02, 3.0):
        latency.observe(s)
    health: dict[str, Any] = {
        "uptime_s": 12.5,
        "components": {"mqtt": True, "database": False},
        "ingest": {"received": 10, "stored_messages": 8, "duplicates": 1,
                   "rejected": {"unknown_device": 2}, "batches": 3, "write_errors": 0},
        "queues": {"mqtt_pending": 4, "batches_waiting": 1},
        "detector_hits": 5, "events_opened": 2, "events_escalated": 1,
        "outputs": {
            "mqtt_feed": {"state": "leading", "published": 6, "latency_s": latency.snapshot()},
            "webhooks": {"delivered": 3, "failed": 2, "disabled": 0,
                         "latency_s": LatencyHistogram().snapshot()},
        },
    }  # fmt: skip
    figures = DatabaseFigures(
        open_events=[("reported", "red", 2)],
        subscriptions={"enabled": 1, "failing": 1, "disabled": 0},
        outbox=4,
        lag={"mqtt_feed": 0, "webhook_fanout": 3},
    )
    text = scrape(health, figures, [("sse", LatencyHistogram().snapshot())])
    for line in [
        'gridwatch_component_up{component="database"} 0.0',
        "gridwatch_messages_received_total 10.0",
        'gridwatch_messages_rejected_total{reason="unknown_device"} 2.0',
        "gridwatch_detector_hits_total 5.0",
        'gridwatch_events_open{severity="red",state="reported"} 2.0',
        'gridwatch_queue_depth{queue="webhook_outbox"} 4.0',
        'gridwatch_queue_depth{queue="mqtt_pending"} 4.0',
        'gridwatch_webhook_deliveries_total{outcome="failed"} 2.0',
        'gridwatch_delivery_latency_seconds_bucket{le="0.005",output="mqtt"} 1.0',
        'gridwatch_delivery_latency_seconds_bucket{le="0.025",output="mqtt"} 3.0',
        'gridwatch_delivery_latency_seconds_bucket{le="+Inf",output="mqtt"} 4.0',
        'gridwatch_delivery_latency_seconds_count{output="sse"} 0.0',
        'gridwatch_output_lag_changes{consumer="webhook_fanout"} 3.0',
        "gridwatch_scrape_database_ok 1.0",
    ]:
        assert line in text, line
    without_db = list(families({}, None, []))
    assert [m.name for m in without_db][-1] == "gridwatch_scrape_database_ok"


def test_metrics_have_a_series_per_camera_this_worker_pulls() -> None:
    health = {
        "cameras": {
            "per_camera": [
                {"camera_id": "CAM-1", "connected": True, "fps_in": 15.0, "fps_analysed": 5.0,
                 "frames_dropped": 3, "reconnects": 1, "faults": ["covered"]},
                {"camera_id": "CAM-2", "connected": False, "fps_in": 0.0, "fps_analysed": 0.0,
                 "frames_dropped": 0, "reconnects": 4, "faults": []},
            ]
        }
    }  # fmt: skip
    text = scrape(health)
    for line in [
        'gridwatch_camera_fps{camera="CAM-1",stage="in"} 15.0',
        'gridwatch_camera_fps{camera="CAM-1",stage="analysed"} 5.0',
        'gridwatch_camera_connected{camera="CAM-2"} 0.0',
        'gridwatch_camera_frames_dropped_total{camera="CAM-1"} 3.0',
        'gridwatch_camera_reconnects_total{camera="CAM-2"} 4.0',
        'gridwatch_camera_fault{camera="CAM-1",fault="covered"} 1.0',
    ]:
        assert line in text, line
    assert 'fault{camera="CAM-2"' not in text


def test_metrics_show_the_spool_and_the_clips() -> None:
    health = {
        "spool": {"enabled": True, "batches": 3, "bytes": 4096, "spooled_messages": 150,
                  "damaged": 1, "provisional_hits": 2},
        "cameras": {"per_camera": [], "clips": {"started": 4, "joined": 1, "stored": 3}},
    }  # fmt: skip
    text = scrape(health)
    for line in [
        "gridwatch_spool_batches 3.0",
        "gridwatch_spool_bytes 4096.0",
        "gridwatch_spool_messages_total 150.0",
        "gridwatch_spool_damaged_total 1.0",
        "gridwatch_provisional_alerts_total 2.0",
        'gridwatch_video_clips_total{outcome="stored"} 3.0',
        'gridwatch_video_clips_total{outcome="skipped"} 0.0',
    ]:
        assert line in text, line
    off = list(families({"spool": {"enabled": False}}, None, []))
    assert not [m for m in off if m.name.startswith("gridwatch_spool")]


# --- the stream's fan-out ------------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


async def test_the_tail_feeds_matching_clients_and_cuts_off_a_full_queue() -> None:
    tail = LiveTail(StreamOptions(queue_max=2))
    tail.position = 5
    everything = tail.subscribe(lambda r: True, None)
    reds = tail.subscribe(lambda r: r.severity == "red", None)
    resumed = tail.subscribe(lambda r: True, 7)  # has seen up to 7 elsewhere
    slow = tail.subscribe(lambda r: True, None)
    slow.transport = _Transport()  # type: ignore[assignment]  # only abort() is used
    tail.dispatch([row(6), row(7, severity="blue")])
    assert [d for _, d in _drain(everything)] == [frame(row(6)), frame(row(7, severity="blue"))]
    assert [d for _, d in _drain(reds)] == [frame(row(6))]
    assert _drain(resumed) == []
    assert tail.position == 7 and not slow.cut_off
    tail.dispatch([row(8)])
    assert slow.cut_off and slow.transport.aborted and slow not in tail.clients  # type: ignore[union-attr]
    assert [d for _, d in _drain(resumed)] == [frame(row(8))]
    tail.end_all()
    assert tail.clients == set() and _drain(everything)[-1] == (0.0, b"")


def _drain(client: Any) -> list[tuple[float, bytes]]:
    out = []
    while not client.queue.empty():
        out.append(client.queue.get_nowait())
    return out


def test_an_sse_frame_is_id_then_single_line_data() -> None:
    text = frame(row(42)).decode()
    assert text.startswith("id: 42\ndata: {") and text.endswith("}\n\n")
    assert text.count("\n") == 3


# --- supervision ---------------------------------------------------------------------------


async def test_a_crashing_worker_restarts_within_its_budget_then_gives_up() -> None:
    runs: list[int] = []

    async def body() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")

    crashes: list[BaseException] = []
    from ingest.backoff import Backoff

    await supervise("w", body, budget=5, backoff=Backoff(0.001, 0.001), on_crash=crashes.append)
    assert len(runs) == 3 and len(crashes) == 2

    async def always() -> None:
        raise RuntimeError("boom")

    with pytest.raises(CrashBudgetExceeded):
        await supervise("w", always, budget=2, backoff=Backoff(0.001, 0.001))

    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("w", forever))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_tail_hands_provisional_alerts_to_the_clients_that_may_see_them() -> None:
    from alerts.provisional import ProvisionalAlert

    def alert(grid: str | None, ancestors: tuple[str, ...]) -> ProvisionalAlert:
        return ProvisionalAlert(
            device_id="SD-1", grid_code=grid, ancestors=ancestors, site="", address="",
            lat=None, lon=None, type="smoke_alarm", category="fire", severity="red",
            phase="raised", condition_key="SD-1/device_events/alarm",
            ts="2026-11-23T08:00:00.000000Z", detected_at="2026-11-23T08:00:00.100000Z",
        )  # fmt: skip

    tail = LiveTail(StreamOptions(queue_max=1))
    tail.position = 9
    town = tail.subscribe(lambda r: True, None)
    town.sees = lambda a: "T1" in a.ancestors
    legacy = tail.subscribe(lambda r: True, None)  # no provisional filter: gets none
    tail.provisional(b"{}", alert("G-1", ("C1", "T1", "V1")))
    tail.provisional(b"{}", alert("G-9", ("C1", "T2", "V9")))
    assert town.queue.qsize() == 1 and legacy.queue.qsize() == 0
    _, data = town.queue.get_nowait()
    assert data == b"event: provisional\ndata: {}\n\n"  # no id: the resume point stays
    assert tail.position == 9 and town.after == 9
    tail.provisional(b"{}", alert("G-1", ("C1", "T1", "V1")))
    tail.provisional(b"{}", alert("G-1", ("C1", "T1", "V1")))  # queue of 1 full: cut off
    assert town.cut_off and town not in tail.clients
