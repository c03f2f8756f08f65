"""``gridwatch run``: wires the rooms together and supervises them until a signal.

Start order: schema, readings partitions, registry, MQTT, HTTP. Stop order is the reverse
of the data flow: stop taking messages, store and acknowledge what was taken, say offline
and disconnect (the broker keeps the session and queues what comes next), stop HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import cv2
import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from alerts.correlation import DeviceContext
from alerts.figures import CHINA_TZ
from alerts.incidents import AlertRules, AlertStage
from alerts.provisional import provisional_alerts
from alerts.safety_index import compute_daily
from api.context import ApiContext
from api.http import make_app
from api.stream import TAIL, LiveTail
from detectors.base import Hit
from devices.messages import RejectReason
from devices.registry_store import load_cameras
from gridwatch.broker_files import service_credentials
from gridwatch.config import Settings
from gridwatch.endpoints import Endpoints
from ingest.camera_capture import CaptureSettings
from ingest.camera_supervisor import CameraSupervisor
from ingest.clip_recorder import ClipRecorder
from ingest.detection_stage import DetectionStage, HitSink
from ingest.known_devices import REGISTRY_CHANNEL, load_device_contexts, load_known_devices
from ingest.mqtt_source import MqttEndpoint, MqttSource
from ingest.pipeline import IngestPipeline, StoredHook
from ingest.provisional import ProvisionalDetection
from ingest.rate_limit import DeviceRateLimiter, RateLimitStage
from ingest.spool import DiskSpool
from ingest.topics import UplinkTopics
from ingest.validate import Limits, Validator
from ingest.video_clips import ClipSettings
from ingest.video_stage import VideoStage
from outputs.mqtt_feed import MqttFeed
from outputs.provisional_relay import ProvisionalRelay
from outputs.webhooks import WebhookDispatcher
from storage.media import MediaStore
from storage.migrate import migrate
from storage.timeseries import maintain
from storage.tokens import ensure_admin_token

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 3600.0


class Service:
    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.started_at = time.time()
        self.topics = UplinkTopics(settings.mqtt.topic_root)
        self.source: MqttSource | None = None
        self.pipeline: IngestPipeline | None = None
        self.validator: Validator | None = None
        self.http_url = ""
        # Called with every stored batch, in order; detection subscribes here.
        self.stored_listeners: list[StoredHook] = []
        # Called with every batch saved to the spool while the database is away.
        self.spooled_listeners: list[StoredHook] = []
        # Called with every batch of detector hits, inside the transaction that stores them.
        self.hit_sinks: list[HitSink] = []
        self.detection: DetectionStage | None = None
        self.alerts: AlertStage | None = None
        self.device_contexts: dict[str, DeviceContext] = {}
        self.feed: MqttFeed | None = None
        self.webhooks: WebhookDispatcher | None = None
        self.pool: AsyncConnectionPool | None = None
        self.video: VideoStage | None = None
        self.media = MediaStore(settings.data_dir.resolve() / "media")
        self.cameras: CameraSupervisor | None = None
        self.provisional: ProvisionalDetection | None = None
        self.relay: ProvisionalRelay | None = None
        # Printed once, on the first start (also kept in <data dir>/admin-token, mode 0600).
        self.admin_token: str | None = None
        self._stop = asyncio.Event()

    async def connect_db(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self.endpoints.db_conninfo)

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, object]:
        source, pipeline = self.source, self.pipeline
        components = {
            "mqtt": bool(source and source.connected.is_set()),
            "database": bool(pipeline and pipeline.db_ok),
        }
        outputs: dict[str, object] = {}
        if self.feed is not None:
            components["mqtt_feed"] = self.feed.healthy
            outputs["mqtt_feed"] = self.feed.stats.snapshot()
        if self.webhooks is not None:
            components["webhooks"] = self.webhooks.healthy
            outputs["webhooks"] = self.webhooks.stats.snapshot()
        cameras: dict[str, object] = {}
        if self.cameras is not None:
            components["cameras"] = self.cameras.healthy()
            cameras = {
                "pulled": sorted(self.cameras.held()),
                "registered": len(self.cameras.cameras),
                "video_hits": self.video.hits if self.video else 0,
                "snapshots": self.video.snapshots if self.video else 0,
                "clips": self.video.clips.stats() if self.video and self.video.clips else {},
                "per_camera": [
                    {
                        "camera_id": st.camera_id,
                        "connected": st.connected,
                        "fps_in": st.fps_in,
                        "fps_analysed": st.fps_analysed,
                        "frames_dropped": st.frames_dropped,
                        "reconnects": st.reconnects,
                        "faults": sorted(self.video.faults(st.camera_id)) if self.video else [],
                    }
                    for st in self.cameras.fleet.stats()
                ],
            }
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "components": components,
            "outputs": outputs,
            "cameras": cameras,
            "ingest": pipeline.stats.snapshot() if pipeline else {},
            "queues": {
                "mqtt_pending": source.pending() if source else 0,
                "batches_waiting": pipeline.queue_depth() if pipeline else 0,
            },
            "spool": self._spool_health(),
            "devices_known": len(self.validator.devices) if self.validator else 0,
            "detector_hits": self.detection.hits if self.detection else 0,
            "patrol_deadlines_owner": bool(self.detection and self.detection.owner.owned),
            "events_opened": self.alerts.opened if self.alerts else 0,
            "events_escalated": self.alerts.escalated if self.alerts else 0,
        }

    def _spool_health(self) -> dict[str, object]:
        spool = self.pipeline.spool if self.pipeline else None
        if spool is None:
            return {"enabled": False}
        provisional, relay = self.provisional, self.relay
        return {
            "enabled": True,
            "batches": len(spool),
            "bytes": spool.bytes,
            "max_bytes": spool.max_bytes,
            "spooled_batches": spool.spooled_batches,
            "spooled_messages": spool.spooled_messages,
            "damaged": spool.damaged,
            "provisional_active": bool(provisional and provisional.active),
            "provisional_hits": provisional.hits if provisional else 0,
            "provisional_published": relay.published if relay else 0,
            "provisional_relayed": relay.relayed if relay else 0,
        }

    async def prepare_database(self) -> None:
        s = self.settings.db
        async with await self.connect_db() as conn:
            applied = await migrate(conn)
            if applied:
                log.info("schema migrated", extra={"applied": applied})
            await maintain(
                conn,
                now=datetime.now(UTC),
                retention_days=s.readings_retention_days,
                ahead_days=s.partitions_ahead_days,
                compress_after_days=s.compress_after_days,
            )

    async def run(
        self, on_ready: Callable[[Service], Awaitable[None] | None] | None = None
    ) -> None:
        settings = self.settings
        await self.prepare_database()
        async with await self.connect_db() as conn:
            known = await load_known_devices(conn)
            self.device_contexts = await load_device_contexts(conn)
        self.validator = Validator(
            self.topics,
            known,
            Limits(
                max_payload_bytes=settings.mqtt.max_payload_bytes,
                max_future_skew_s=settings.ingest.max_future_skew_s,
                oldest_accepted_s=settings.db.readings_retention_days * 86400.0,
                max_topic_bytes=settings.ingest.max_topic_bytes,
            ),
        )
        username, password = service_credentials(settings)
        self.source = MqttSource(
            MqttEndpoint.from_url(self.endpoints.mqtt_url, ca_file=settings.mqtt.tls_ca_file),
            client_id=settings.mqtt.client_id,
            subscription=self.topics.subscription(settings.mqtt.shared_group),
            status_topic=self.topics.service_status(settings.mqtt.client_id),
            username=username,
            password=password,
            keepalive_s=settings.mqtt.keepalive_s,
            session_expiry_s=settings.mqtt.session_expiry_s,
            receive_maximum=settings.mqtt.receive_maximum,
            max_pending=settings.ingest.batch_max * settings.ingest.queue_batches,
            reconnect_min_s=settings.mqtt.reconnect_min_s,
            reconnect_max_s=settings.mqtt.reconnect_max_s,
        )
        self.pipeline = IngestPipeline(
            self.source,
            self.validator,
            self.connect_db,
            batch_max=settings.ingest.batch_max,
            queue_batches=settings.ingest.queue_batches,
            dedup_window=settings.ingest.dedup_window,
        )
        self.pipeline.listeners = self.stored_listeners
        self.pipeline.spooled_listeners = self.spooled_listeners
        validator = self.validator
        a = settings.alerts
        self.alerts = AlertStage(
            lambda: self.device_contexts,
            AlertRules(a.correlation, a.severity, a.workflow, a.workflow.deadlines),
            sweep_s=a.sweep_s,
        )
        self.hit_sinks.insert(0, self.alerts.on_hits)
        self.detection = DetectionStage(lambda: validator.devices, sinks=self.hit_sinks)
        self.pipeline.stages = [self.detection, self.alerts]
        self._prepare_spool()
        self._limit_device_rates()
        if settings.video.enabled:
            self._prepare_video()
        async with contextlib.AsyncExitStack() as stack:
            await self._serve(stack, on_ready)

    def _prepare_video(self) -> None:
        """Camera frames → video detectors → the same alert stage, between ingest batches."""
        v, alerts = self.settings.video, self.alerts
        assert alerts is not None and self.pipeline is not None
        if v.opencv_threads:
            cv2.setNumThreads(v.opencv_threads)
        clips = None
        if v.clips:
            clip_settings = ClipSettings(
                width=v.clip_width,
                pre_s=v.clip_pre_s,
                post_s=v.clip_post_s,
                rate=v.sample_fps or 30.0,  # every frame analysed: bound as for 30 fps
                queue=v.clip_queue,
                format=v.clip_format,
                quality=v.clip_quality,
            )
            clips = ClipRecorder(clip_settings, self.media, self._grid_of)
            # the amended event has a new version: the alert stage reads its holders again
            clips.listeners.append(lambda _: alerts.invalidate())
        self.video = VideoStage(
            alerts.on_hits,
            config=v.detectors,
            save_snapshot=self._save_snapshot,
            link_snapshots=self.media.attach_cited,
            snapshot_quality=v.snapshot_quality,
            clips=clips,
            on_committed=alerts.committed,
            on_rolled_back=alerts.rolled_back,
        )
        self.pipeline.stages.append(self.video)
        capture = CaptureSettings(
            sample_fps=v.sample_fps,
            # the grace after which a camera with no frame is a camera_fault
            no_frame_after_s=v.detectors.health.unreachable_after_s,
            reconnect_max_s=v.reconnect_max_s,
            jpeg_quality=v.jpeg_quality,
        )
        self.cameras = CameraSupervisor(
            self.endpoints.db_conninfo,
            self.video,
            capture,
            worker=self.settings.mqtt.client_id,
            lease_s=v.lease_s,
            max_cameras=v.max_cameras,
            preview_width=v.preview_width,
        )

    async def _save_snapshot(
        self, conn: psycopg.AsyncConnection, jpeg: bytes, hit: Hit
    ) -> dict[str, object]:
        """Store the frame behind a video hit as evidence; returns what the evidence cites."""
        item = await self.media.save(
            conn,
            jpeg,
            content_type="image/jpeg",
            kind="snapshot",
            device_id=hit.device_id,
            grid_code=self._grid_of(hit.device_id),
            taken_at=datetime.fromtimestamp(hit.ts, UTC),
        )
        return dict(item.evidence())

    def _grid_of(self, device_id: str) -> str | None:
        """The grid a camera's media belong to (the API serves them within its scope)."""
        context = self.device_contexts.get(device_id)
        return context.grid_code if context else None

    async def _camera_jpeg(self, camera_id: str) -> bytes | None:
        cameras = self.cameras
        if cameras is None or camera_id not in cameras.held():
            return None
        return await asyncio.to_thread(cameras.fleet.latest_jpeg, camera_id)

    def _prepare_spool(self) -> None:
        """While the database is away: spool batches to disk and detect on them (provisional
        alerts); see ingest/spool.py and ingest/provisional.py."""
        assert self.pipeline is not None and self.detection is not None
        size = self.settings.ingest.spool_max_mb * 1024 * 1024
        if size <= 0:
            return
        root = self.settings.data_dir.resolve() / "spool" / self.settings.mqtt.client_id
        self.pipeline.spool = DiskSpool(root, size)
        if len(self.pipeline.spool):
            log.warning(
                "spooled batches from an earlier outage will be written first",
                extra={"batches": len(self.pipeline.spool), "bytes": self.pipeline.spool.bytes},
            )
        detection, validator = self.detection, self.validator
        assert validator is not None
        self.provisional = ProvisionalDetection(
            lambda: detection.runtime, lambda: validator.devices, self._provisional_hits
        )
        self.pipeline.outage = self.provisional

    def _provisional_hits(self, hits: list[Hit], now: float) -> None:
        alerts = provisional_alerts(hits, self.device_contexts, now, self.settings.mqtt.client_id)
        for alert in alerts:
            if alert.phase == "raised":
                log.warning(
                    "provisional alert (database away, not yet a grid event)",
                    extra={
                        "device_id": alert.device_id,
                        "grid_code": alert.grid_code,
                        "event_type": alert.type,
                        "severity": alert.severity,
                    },
                )
        if self.relay is not None:
            self.relay.publish(alerts)

    def _start_relay(self, stack: contextlib.AsyncExitStack, tail: LiveTail) -> None:
        m = self.settings.mqtt
        username, password = service_credentials(self.settings)
        self.relay = ProvisionalRelay(
            MqttEndpoint.from_url(self.endpoints.mqtt_url, ca_file=m.tls_ca_file),
            root=m.topic_root,
            client_id=f"{m.client_id}-provisional",
            username=username,
            password=password,
        )
        self.relay.subscribers.append(tail.provisional)
        self.relay.start()
        stack.callback(self.relay.stop)

    def _limit_device_rates(self) -> None:
        """Drop what a device sends beyond its rate (ingest/rate_limit.py), counted."""
        assert self.pipeline is not None
        pipeline, i = self.pipeline, self.settings.ingest
        limiter = DeviceRateLimiter(i.device_rate_per_s, i.device_burst)
        pipeline.limiter = limiter

        def counted(n: int) -> None:
            pipeline.stats.rejected[RejectReason.RATE_LIMITED.value] += n

        pipeline.stages.append(RateLimitStage(limiter, counted))

    async def _serve(
        self,
        stack: contextlib.AsyncExitStack,
        on_ready: Callable[[Service], Awaitable[None] | None] | None,
    ) -> None:
        """Start the rest; every part started is stopped by ``stack`` in reverse order, also
        when a later part fails to start."""
        settings = self.settings
        assert self.source is not None and self.pipeline is not None
        stack.callback(log.info, "gridwatch stopped")
        self.pool = AsyncConnectionPool(
            self.endpoints.db_conninfo,
            min_size=settings.db.pool_min,
            max_size=settings.db.pool_max,
            open=False,
        )
        await self.pool.open()
        stack.push_async_callback(self.pool.close)
        if self.video is not None and self.video.clips is not None:
            stack.push_async_callback(self._finish_clips)  # after the pipeline stopped
        self.admin_token = await ensure_admin_token(self.pool, settings.data_dir.resolve())
        context = ApiContext(self.pool, settings, self.health)
        context.on_event_changed.append(self._event_changed_by_api)
        context.camera_jpeg = self._camera_jpeg
        context.media = self.media
        context.mqtt_url = self.endpoints.mqtt_url
        app = make_app(context)
        if settings.outputs.provisional_enabled:
            self._start_relay(stack, app[TAIL])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.http_url = f"http://{host}:{port}"
        workers = self._start_outputs()
        background = [
            asyncio.create_task(self._watch_registry(), name="registry-watch"),
            asyncio.create_task(self._maintenance(), name="maintenance"),
            *workers,
        ]
        if self.cameras is not None:
            background.append(asyncio.create_task(self.cameras.run(), name="cameras"))
        stack.push_async_callback(_cancel, background)
        self.source.start(asyncio.get_running_loop())
        stack.push_async_callback(asyncio.to_thread, self.source.stop)
        pipeline_task = asyncio.create_task(self.pipeline.run(), name="ingest")
        stack.push_async_callback(self._stop_pipeline, pipeline_task)
        log.info(
            "gridwatch running", extra={"http": self.http_url, "mqtt": self.endpoints.mqtt_url}
        )
        if on_ready is not None:
            result = on_ready(self)
            if asyncio.iscoroutine(result):
                await result
        stop_wait = asyncio.create_task(self._stop.wait())
        stack.callback(stop_wait.cancel)
        done, _ = await asyncio.wait(
            {stop_wait, pipeline_task, *workers}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done - {stop_wait}:
            task.result()  # a crashed pipeline or output worker stops the service loudly

    async def _finish_clips(self) -> None:
        """Shutdown: clips still collecting end with the frames they have and are stored and
        cited, so a raise just before a stop keeps its clip."""
        assert self.video is not None and self.video.clips is not None
        clips = self.video.clips
        try:
            async with await self.connect_db() as conn:
                stored = await clips.finish(conn, time.time())
            if stored:
                log.info("clips finished at shutdown", extra={"clips": stored})
        except psycopg.Error as exc:
            log.warning("clips in flight not stored at shutdown: %s", exc)
        finally:
            await clips.aclose()

    async def _stop_pipeline(self, pipeline_task: asyncio.Task[None]) -> None:
        """Stop taking messages; store and acknowledge what was taken (before MQTT stops)."""
        log.info("gridwatch stopping")
        assert self.pipeline is not None
        self.pipeline.stop()
        with contextlib.suppress(Exception):
            await pipeline_task
        log.info("ingest stopped", extra={"ingest": self.pipeline.stats.snapshot()})

    def _start_outputs(self) -> list[asyncio.Task[None]]:
        """The downstream MQTT feed and webhook delivery, each in its own supervised task."""
        o, m = self.settings.outputs, self.settings.mqtt
        username, password = service_credentials(self.settings)
        if o.feed_enabled:
            self.feed = MqttFeed(
                self.endpoints.db_conninfo,
                self.endpoints.mqtt_url,
                client_id=o.feed_client_id or f"{m.client_id}-feed",
                topic_root=m.topic_root,
                username=username,
                password=password,
                tls_ca_file=m.tls_ca_file,
                keepalive_s=m.keepalive_s,
                inflight=o.feed_inflight,
                batch=o.feed_batch,
                poll_s=o.poll_s,
                reconnect_min_s=m.reconnect_min_s,
                reconnect_max_s=m.reconnect_max_s,
                strict_xmin=o.strict_xmin,
            )
        if o.webhooks_enabled:
            self.webhooks = WebhookDispatcher(
                self.endpoints.db_conninfo,
                worker_id=m.client_id,
                timeout_s=o.webhook_timeout_s,
                retry_min_s=o.webhook_retry_min_s,
                retry_max_s=o.webhook_retry_max_s,
                disable_after_s=o.webhook_disable_after_s,
                concurrency=o.webhook_concurrency,
                poll_s=o.poll_s,
                attempts_retention_days=o.webhook_attempts_retention_days,
                strict_xmin=o.strict_xmin,
            )
        named = (("mqtt-feed", self.feed), ("webhooks", self.webhooks))
        return [asyncio.create_task(w.run(), name=n) for n, w in named if w is not None]

    def _event_changed_by_api(self, event_id: str) -> None:
        """A person moved an event: the cached holder is stale; read holders again."""
        if self.alerts is not None:
            self.alerts.invalidate()

    async def reload_registry(self) -> None:
        async with await self.connect_db() as conn:
            known = await load_known_devices(conn)
            self.device_contexts = await load_device_contexts(conn)
            if self.cameras is not None:
                self.cameras.set_cameras(await load_cameras(conn))
        if self.validator is not None:
            self.validator.devices = known
        log.info("registry reloaded", extra={"devices": len(known)})

    async def _watch_registry(self) -> None:
        """Reload on NOTIFY from an import; also every refresh interval, in case one was missed."""
        interval = self.settings.ingest.registry_refresh_s
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.endpoints.db_conninfo, autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
                    await self.reload_registry()
                    while True:
                        gen = conn.notifies(timeout=interval)
                        async for _ in gen:
                            break
                        await self.reload_registry()
            except psycopg.Error as exc:
                log.warning("registry watch lost the database: %s", exc)
                await asyncio.sleep(self.settings.mqtt.reconnect_max_s / 10)

    async def _maintenance(self) -> None:
        """Hourly: today's safety index, readings partitions or policies, dead-letter retention."""
        s = self.settings.db
        while True:
            try:
                async with await self.connect_db() as conn:
                    today = datetime.now(CHINA_TZ).date()
                    await compute_daily(
                        conn, today, self.settings.alerts.safety_index,
                        policy=self.settings.alerts.workflow.deadlines,
                    )  # fmt: skip
            except psycopg.Error as exc:
                log.warning("safety index not computed: %s", exc)
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            try:
                async with await self.connect_db() as conn:
                    await maintain(
                        conn,
                        now=datetime.now(UTC),
                        retention_days=s.readings_retention_days,
                        ahead_days=s.partitions_ahead_days,
                        compress_after_days=s.compress_after_days,
                    )
                    await conn.execute(
                        "DELETE FROM dead_letters"
                        " WHERE received_at < now() - make_interval(days => %s)",
                        (s.dead_letter_retention_days,),
                    )
                    await conn.commit()
                    keep = timedelta(days=self.settings.video.snapshot_retention_days)
                    for kind in ("snapshot", "clip"):
                        await self.media.expire(conn, kind, datetime.now(UTC) - keep)
            except psycopg.Error as exc:
                log.warning("maintenance skipped: %s", exc)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def install_signal_handlers(service: Service) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.request_stop)
