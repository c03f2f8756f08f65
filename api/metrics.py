"""``GET /metrics``: Prometheus text exposition (interface.md, "Access and operations").

**Behind a token, like every route but ``/healthz`` and ``/readyz``**: any valid token, of
any role and scope (nothing here names a grid or a person, and devices only as the
``camera`` label of the per-camera series of the cameras this worker pulls). Give the
scraper a ``viewer`` token of its own (``gridwatch tokens create --role viewer --scope
<county> --name prometheus``) and set it as the scrape job's ``authorization:
{credentials_file: …}``; revoking it stops the scrape and nothing else.

One ``CollectorRegistry`` per application (no process-wide globals; two apps in one test
process do not collide). Rooms add their own live metrics to it through
:func:`registry_of` (the stream does); everything else is read at scrape time:

- from ``ApiContext.health()``: messages received / stored / duplicates / rejected by
  reason, ingest batches and write errors, detector hits, events opened and escalated,
  component status, queue depths, and the output workers' counters and delivery-latency
  histograms (``health()["outputs"]``, when the service reports them);
- from the database, in one short query: open events by state and severity, webhook
  subscriptions by state, the webhook outbox depth, how far each output consumer is
  behind the change log. If the database does not answer within ``DB_TIMEOUT_S`` those
  series are left out and ``gridwatch_scrape_database_ok`` is 0.

``gridwatch_delivery_latency_seconds{output}`` is the time from a change being logged
(its transaction's start) to the output's acknowledgement: PUBACK for ``mqtt``, 2xx for
``webhook``, written to the socket for ``sse``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from psycopg_pool import PoolTimeout

from api.context import CONTEXT
from outputs import LatencyHistogram

log = logging.getLogger(__name__)

PATH: Final = "/metrics"
DB_TIMEOUT_S: Final = 2.0
LATENCY: Final = "gridwatch_delivery_latency_seconds"
# health()["outputs"] key → the `output` label
OUTPUT_LABELS: Final = {"mqtt_feed": "mqtt", "webhooks": "webhook"}

REGISTRY = web.AppKey("gridwatch_metrics_registry", CollectorRegistry)


@dataclass(slots=True)
class _Sources:
    latency: list[tuple[str, LatencyHistogram]] = field(default_factory=list)


SOURCES = web.AppKey("gridwatch_metrics_sources", _Sources)


def registry_of(app: web.Application) -> CollectorRegistry:
    """The application's registry (made on first use, before the app starts)."""
    if REGISTRY not in app:
        app[REGISTRY] = CollectorRegistry()
    return app[REGISTRY]


def latency_source(app: web.Application, output: str, histogram: LatencyHistogram) -> None:
    """Report ``histogram`` as ``gridwatch_delivery_latency_seconds{output=...}``."""
    if SOURCES not in app:
        app[SOURCES] = _Sources()
    app[SOURCES].latency.append((output, histogram))


@dataclass(slots=True)
class DatabaseFigures:
    open_events: list[tuple[str, str, int]]  # state, severity, count
    subscriptions: dict[str, int]  # enabled | failing | disabled
    outbox: int
    lag: dict[str, int]  # consumer → changes behind the log's head


_FIGURES: Final = """
SELECT
  (SELECT coalesce(json_agg(json_build_array(state, severity, n)), '[]')
     FROM (SELECT state, severity, count(*) AS n FROM grid_events
           WHERE state NOT IN ('closed', 'false_alarm') GROUP BY 1, 2) e),
  (SELECT json_build_object(
     'enabled', count(*) FILTER (WHERE enabled AND failing_since IS NULL),
     'failing', count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL),
     'disabled', count(*) FILTER (WHERE NOT enabled)) FROM webhook_subscriptions),
  (SELECT count(*) FROM webhook_outbox),
  (SELECT coalesce(json_object_agg(c.name,
            greatest(0, (SELECT coalesce(max(seq), 0) FROM event_log) - c.seq)), '{}')
     FROM feed_cursor c)
"""


async def database_figures(conn: psycopg.AsyncConnection[Any]) -> DatabaseFigures:
    cur = await conn.execute(_FIGURES)
    row = await cur.fetchone()
    assert row is not None
    events, subs, outbox, lag = row
    return DatabaseFigures(
        open_events=[(s, v, int(n)) for s, v, n in events],
        subscriptions={k: int(v) for k, v in subs.items()},
        outbox=int(outbox),
        lag={k: int(v) for k, v in lag.items()},
    )


def _latency_family(sources: list[tuple[str, Mapping[str, Any]]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        LATENCY,
        "From a change being logged to its acknowledgement by the output.",
        labels=["output"],
    )
    for output, snap in sources:
        buckets = [(str(le), float(n)) for le, n in snap["buckets"]]
        family.add_metric([output], buckets, float(snap["sum"]))
    return family


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value or 0))


def families(
    health: Mapping[str, Any],
    figures: DatabaseFigures | None,
    latency: list[tuple[str, Mapping[str, Any]]],
) -> Iterator[Metric]:
    """Every scrape-time metric from a health report and the database figures (pure)."""
    yield GaugeMetricFamily(
        "gridwatch_uptime_seconds", "Seconds since the service started.", health.get("uptime_s", 0)
    )
    up = GaugeMetricFamily(
        "gridwatch_component_up", "1 when the component is connected.", labels=["component"]
    )
    for name, ok in sorted(health.get("components", {}).items()):
        up.add_metric([name], 1.0 if ok else 0.0)
    yield up

    ingest = health.get("ingest", {})
    yield _counter(
        "gridwatch_messages_received", "Device messages taken off MQTT.", ingest.get("received")
    )
    yield _counter(
        "gridwatch_messages_stored", "Device messages stored.", ingest.get("stored_messages")
    )
    yield _counter(
        "gridwatch_messages_duplicate", "Repeated messages dropped.", ingest.get("duplicates")
    )
    rejected = CounterMetricFamily(
        "gridwatch_messages_rejected", "Device messages rejected, by reason.", labels=["reason"]
    )
    for reason, count in sorted(ingest.get("rejected", {}).items()):
        rejected.add_metric([reason], float(count))
    yield rejected
    yield _counter("gridwatch_ingest_batches", "Batches written.", ingest.get("batches"))
    yield _counter(
        "gridwatch_ingest_write_errors", "Failed batch writes.", ingest.get("write_errors")
    )
    yield _counter("gridwatch_detector_hits", "Detector hits.", health.get("detector_hits"))
    yield _counter("gridwatch_events_opened", "Grid events opened.", health.get("events_opened"))
    yield _counter(
        "gridwatch_events_escalated", "Grid events escalated.", health.get("events_escalated")
    )

    depth = GaugeMetricFamily(
        "gridwatch_queue_depth", "Items waiting in a queue.", labels=["queue"]
    )
    for name, value in sorted(health.get("queues", {}).items()):
        depth.add_metric([name], float(value))
    if figures is not None:
        depth.add_metric(["webhook_outbox"], float(figures.outbox))
    yield depth

    outputs = health.get("outputs", {})
    feed = outputs.get("mqtt_feed")
    if feed is not None:
        yield _counter("gridwatch_feed_published", "Changes published on MQTT.", feed["published"])
        yield GaugeMetricFamily(
            "gridwatch_feed_leader",
            "1 when this worker publishes the MQTT feed.",
            1.0 if feed["state"] == "leading" else 0.0,
        )
    hooks = outputs.get("webhooks")
    if hooks is not None:
        deliveries = CounterMetricFamily(
            "gridwatch_webhook_deliveries", "Webhook delivery attempts.", labels=["outcome"]
        )
        deliveries.add_metric(["delivered"], float(hooks["delivered"]))
        deliveries.add_metric(["failed"], float(hooks["failed"]))
        yield deliveries
        yield _counter(
            "gridwatch_webhook_subscriptions_disabled",
            "Subscriptions this worker disabled.",
            hooks["disabled"],
        )
    yield from _camera_families(health.get("cameras", {}).get("per_camera", []))
    yield from _spool_families(health.get("spool", {}))
    clips = health.get("cameras", {}).get("clips") or {}
    if clips:
        made = CounterMetricFamily(
            "gridwatch_video_clips", "Clips around video hits, by outcome.", labels=["outcome"]
        )
        for outcome in ("started", "joined", "stored", "skipped", "failed", "uncited"):
            made.add_metric([outcome], float(clips.get(outcome, 0)))
        yield made
    yield _latency_family(
        [
            (OUTPUT_LABELS.get(name, name), out["latency_s"])
            for name, out in sorted(outputs.items())
            if "latency_s" in out
        ]
        + latency
    )

    yield GaugeMetricFamily(
        "gridwatch_scrape_database_ok",
        "1 when the database answered this scrape.",
        1.0 if figures is not None else 0.0,
    )
    if figures is None:
        return
    events = GaugeMetricFamily(
        "gridwatch_events_open", "Open grid events.", labels=["state", "severity"]
    )
    for state, severity, count in sorted(figures.open_events):
        events.add_metric([state, severity], float(count))
    yield events
    subs = GaugeMetricFamily(
        "gridwatch_webhook_subscriptions", "Webhook subscriptions.", labels=["state"]
    )
    for state, count in sorted(figures.subscriptions.items()):
        subs.add_metric([state], float(count))
    yield subs
    lag = GaugeMetricFamily(
        "gridwatch_output_lag_changes", "Changes an output has still to take.", labels=["consumer"]
    )
    for name, count in sorted(figures.lag.items()):
        lag.add_metric([name], float(count))
    yield lag


def _spool_families(spool: Mapping[str, Any]) -> Iterator[Metric]:
    """The outage spool: what waits on disk for the database, and what was found meanwhile."""
    if not spool.get("enabled"):
        return
    yield GaugeMetricFamily(
        "gridwatch_spool_batches", "Batches waiting in the spool.", float(spool["batches"])
    )
    yield GaugeMetricFamily(
        "gridwatch_spool_bytes", "Bytes waiting in the spool.", float(spool["bytes"])
    )
    yield _counter(
        "gridwatch_spool_messages",
        "Messages spooled while the database was away.",
        spool["spooled_messages"],
    )
    yield _counter(
        "gridwatch_spool_damaged", "Spool files set aside as unreadable.", spool["damaged"]
    )
    yield _counter(
        "gridwatch_provisional_alerts",
        "Hits sent as provisional alerts while the database was away.",
        spool["provisional_hits"],
    )


def _camera_families(cameras: list[Mapping[str, Any]]) -> Iterator[Metric]:
    """Per camera pulled by this worker (each camera is pulled by one worker at a time)."""
    fps = GaugeMetricFamily(
        "gridwatch_camera_fps", "Frames a second read and analysed.", labels=["camera", "stage"]
    )
    connected = GaugeMetricFamily(
        "gridwatch_camera_connected", "1 while the stream is open.", labels=["camera"]
    )
    dropped = CounterMetricFamily(
        "gridwatch_camera_frames_dropped",
        "Sampled frames replaced before the detectors took them.",
        labels=["camera"],
    )
    reconnects = CounterMetricFamily(
        "gridwatch_camera_reconnects", "Stream reconnections.", labels=["camera"]
    )
    faults = GaugeMetricFamily(
        "gridwatch_camera_fault", "1 while a camera-health condition is raised.",
        labels=["camera", "fault"],
    )  # fmt: skip
    for cam in cameras:
        cid = str(cam["camera_id"])
        fps.add_metric([cid, "in"], float(cam["fps_in"]))
        fps.add_metric([cid, "analysed"], float(cam["fps_analysed"]))
        connected.add_metric([cid], 1.0 if cam["connected"] else 0.0)
        dropped.add_metric([cid], float(cam["frames_dropped"]))
        reconnects.add_metric([cid], float(cam["reconnects"]))
        for fault in cam["faults"]:
            faults.add_metric([cid, str(fault)], 1.0)
    yield from (fps, connected, dropped, reconnects, faults)


class _ScrapeCollector:
    """Yields what the handler gathered just before (sync, as prometheus_client wants)."""

    def __init__(self) -> None:
        self.current: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.current


COLLECTOR = web.AppKey("gridwatch_metrics_collector", _ScrapeCollector)


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    ctx = app[CONTEXT]
    figures: DatabaseFigures | None = None
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), ctx.pool.connection() as conn:
            figures = await database_figures(conn)
    except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
        log.warning("metrics: database figures unavailable: %s", exc)
    sources = app.get(SOURCES) or _Sources()
    latency = [(name, hist.snapshot()) for name, hist in sources.latency]
    collector = app[COLLECTOR]
    # No await between filling and rendering: concurrent scrapes cannot interleave.
    collector.current = list(families(ctx.health(), figures, latency))
    body = generate_latest(registry_of(app))
    collector.current = []
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    collector = _ScrapeCollector()
    app[COLLECTOR] = collector
    registry_of(app).register(collector)
    app.router.add_get(PATH, metrics)
