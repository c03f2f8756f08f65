"""The one typed configuration of gridwatch.

Sources, highest first: keyword arguments (tests), ``GRIDWATCH_<SECTION>_<KEY>`` environment
variables, the TOML file given with ``--config``, then defaults that run out of the box
(embedded broker and database under the data dir). Unknown keys are errors that name the
key, in the file and in the environment alike: a typo must not silently fall back to a
default on a command centre's server.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from alerts.correlation import CorrelationConfig
from alerts.safety_index import SafetyIndexWeights
from alerts.severity import SeverityRules
from alerts.workflow import WorkflowConfig
from detectors.video.pipeline import VideoConfig

ENV_PREFIX = "GRIDWATCH_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(Section):
    """The broker gridwatch subscribes to and publishes on."""

    url: str | None = Field(
        None,
        description="Broker URL (mqtt://host:1883 or mqtts://host:8883). Unset: start the "
        "embedded mosquitto.",
    )
    username: str | None = Field(None, description="Broker user name of gridwatch itself.")
    password: SecretStr | None = Field(None, description="Broker password of gridwatch itself.")
    client_id: str = Field(
        "gridwatch-ingest",
        description="MQTT client id. Must be stable across restarts (the broker keeps the "
        "persistent session under it) and unique per worker.",
    )
    shared_group: str | None = Field(
        None,
        description="MQTT 5 shared-subscription group; set it on every worker so the broker "
        "spreads devices' messages across them ($share/<group>/...).",
    )
    topic_root: str = Field("gridwatch/v1", description="Root of all gridwatch topics.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="How long the broker keeps gridwatch's session (and queues QoS 1 "
        "messages for it) while gridwatch is down.",
    )
    receive_maximum: int = Field(
        20000,
        ge=1,
        le=65535,
        description="QoS 1 messages the broker may have in flight to gridwatch before it "
        "acknowledges them; acknowledgements follow the database commit, so this bounds "
        "what is held in memory and sets the back-pressure point.",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (with jitter).")
    max_payload_bytes: int = Field(
        65536, ge=256, description="Larger payloads are dead-lettered as oversize."
    )
    tls_ca_file: Path | None = Field(
        None,
        description="CA certificate(s) (PEM) that sign the broker's certificate, for "
        "mqtts://. Unset: the system's trusted CAs.",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value


class DbConfig(Section):
    """PostgreSQL (TimescaleDB when the extension is installed)."""

    url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:pass@host/db). Unset: start the "
        "embedded PostgreSQL under the data dir.",
    )
    pool_min: int = Field(1, ge=1, description="Connections kept open.")
    pool_max: int = Field(8, ge=1, description="Most connections open at once.")
    readings_retention_days: int = Field(
        90, ge=1, description="Readings older than this are dropped (partition or chunk)."
    )
    partitions_ahead_days: int = Field(
        3, ge=1, description="Daily partitions created ahead of today (native partitioning)."
    )
    dead_letter_retention_days: int = Field(30, ge=1, description="Dead letters kept this long.")
    compress_after_days: int = Field(
        7, ge=1, description="TimescaleDB only: compress readings chunks older than this."
    )


class EmbeddedConfig(Section):
    """Used only when no broker / database URL is set."""

    mqtt_host: str = Field("127.0.0.1", description="Address of the embedded broker.")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="Port of the embedded broker.")
    pg_port: int = Field(
        5432, ge=1, le=65535, description="Port number of the embedded PostgreSQL socket."
    )


class IngestConfig(Section):
    """Batching, limits and deduplication of device messages."""

    batch_max: int = Field(5000, ge=1, description="Most messages written in one transaction.")
    batch_wait_ms: int = Field(
        20, ge=0, description="How long a batch may wait to fill before it is written."
    )
    queue_batches: int = Field(
        4, ge=1, description="Batches waiting for the database before MQTT reading pauses."
    )
    max_future_skew_s: float = Field(
        600.0, ge=0, description="Device timestamps further in the future are rejected."
    )
    dedup_window: int = Field(
        256, ge=1, description="Recent sequence numbers remembered per device to drop repeats."
    )
    registry_refresh_s: float = Field(
        60.0, gt=0, description="Registry reload interval (also reloaded on NOTIFY)."
    )
    max_topic_bytes: int = Field(
        256,
        ge=32,
        le=65535,
        description="Longer topics are dead-lettered as bad_topic (kept cut to this length).",
    )
    device_rate_per_s: float = Field(
        1.0,
        gt=0,
        description="Messages per second one device may send on average, measured on its own "
        "timestamps (so a backlog it or the broker sends after an outage is not cut). Excess "
        "is dropped and counted as rate_limited, with one dead-letter sample a minute.",
    )
    device_burst: int = Field(
        300, ge=1, description="Messages one device may send at once above its rate."
    )
    spool_max_mb: int = Field(
        1024,
        ge=0,
        description="While the database is away, checked batches are saved under "
        "<data_dir>/spool/<mqtt.client_id> (acknowledged, written when it is back) up to this "
        "size; beyond it, or with 0, messages wait unacknowledged in the broker.",
    )


class AlertsConfig(Section):
    """How hits become grid events: correlation, severity rules, workflow and deadlines.

    Each is a nested table (e.g. ``[alerts.correlation]`` ``window = "PT45M"``,
    ``[alerts.workflow.deadlines.dispatch]`` ``red = "PT5M"``); their keys and defaults are
    listed below.
    """

    correlation: CorrelationConfig = Field(
        default_factory=CorrelationConfig, description="Which hits join one event."
    )
    severity: SeverityRules = Field(
        default_factory=SeverityRules, description="Base severity per type and escalation rules."
    )
    workflow: WorkflowConfig = Field(
        default_factory=WorkflowConfig,
        description="Deadlines per step and severity, auto-closing types, who may close.",
    )
    sweep_s: float = Field(5.0, gt=0, description="How often passed deadlines are looked for.")
    safety_index: SafetyIndexWeights = Field(
        default_factory=SafetyIndexWeights,
        description="Weights of the safety index (平安指数) indicators.",
    )


class OutputsConfig(Section):
    """Downstream: the MQTT event feed, webhooks and the live stream."""

    feed_enabled: bool = Field(True, description="Publish every change on gridwatch/v1/events/…")
    provisional_enabled: bool = Field(
        True,
        description="During a database outage, publish alerts found on spooled messages on "
        "gridwatch/v1/provisional/… and relay every worker's to the live stream.",
    )
    feed_client_id: str | None = Field(
        None,
        description="MQTT client id of the feed (default <mqtt.client_id>-feed), one per worker.",
    )
    feed_inflight: int = Field(
        100, ge=1, le=65535, description="QoS 1 publishes awaiting PUBACK at once."
    )
    feed_batch: int = Field(500, ge=1, description="Changes read from the log at a time.")
    webhooks_enabled: bool = Field(True, description="Run webhook fan-out and delivery.")
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="No 2xx within this is a failed attempt."
    )
    webhook_retry_min_s: float = Field(
        1.0, gt=0, description="First retry delay (exponential, jitter)."
    )
    webhook_retry_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    webhook_disable_after_s: float = Field(
        259200.0,
        gt=0,
        description="Continuous failure this long disables a subscription, with a notice.",
    )
    webhook_concurrency: int = Field(
        8, ge=1, description="Subscriptions one worker delivers to at once."
    )
    webhook_attempts_retention_days: int = Field(
        14, ge=1, description="Delivery log kept this long."
    )
    stream_heartbeat_s: float = Field(15.0, gt=0, description="SSE keepalive-comment interval.")
    stream_queue_max: int = Field(
        1000,
        ge=1,
        description="Events queued per SSE client; further behind, it is cut off and resumes.",
    )
    poll_s: float = Field(5.0, gt=0, description="Read the change log at least this often.")
    strict_xmin: bool = Field(
        True,
        description="Read a change only once every older transaction has ended (safe ordering); "
        "false lowers latency behind long write transactions.",
    )


class VideoSection(Section):
    """Cameras: how streams are pulled, shared between workers, and analysed.

    Every worker pulls a fair share of the registry's cameras, each camera by one worker at a
    time (a PostgreSQL advisory lock per camera, released when a worker dies); the video
    detectors' keys are in docs/detectors.md and set under ``[video.detectors]``.
    """

    enabled: bool = Field(
        True, description="Pull the registry's cameras (devices with an rtsp_url)."
    )
    sample_fps: float = Field(
        5.0, ge=0, description="Frames a second analysed per camera; 0 = all."
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnects.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of latest frames.")
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of evidence.")
    opencv_threads: int = Field(
        1, ge=0,
        description="OpenCV's own worker threads for the detectors' image work (0: one per "
        "core). Cameras already run side by side; 1 avoids thread hand-offs per frame.",
    )  # fmt: skip
    snapshot_retention_days: int = Field(
        30, ge=1,
        description="Snapshots and clips older than this go, unless their event is still open.",
    )  # fmt: skip
    max_cameras: int = Field(
        0, ge=0, description="Most cameras one worker pulls; 0 = a fair share of the live workers."
    )
    lease_s: float = Field(
        10.0, gt=0, description="How often a worker claims, balances and reports its cameras."
    )
    preview_width: int = Field(
        640, ge=80, le=1920,
        description="Width of the latest frame kept in the database for other workers' API.",
    )  # fmt: skip
    clips: bool = Field(
        True,
        description="Keep a short clip around each video raise, added to the event's "
        "evidence (detail.clip) a few seconds after its snapshot.",
    )
    clip_format: Literal["mjpeg", "webm"] = Field(
        "mjpeg",
        description="mjpeg: Motion-JPEG AVI (video/x-msvideo), ~7 ms of CPU a clip at 480 px, "
        "played by VLC, ffplay, Windows players and the console; webm: VP8 (video/webm), "
        "~100x the CPU (0.4 s a clip at 320 px, 0.8 s at 480), plays in any browser.",
    )
    clip_width: int = Field(
        480, ge=64, le=1920,
        description="Width of clip frames: each analysed frame in which something moved is "
        "downscaled to it once, for the pre-roll (0.1–0.25 ms at 720p); still frames repeat "
        "the last still one, downscaled anew each second. With webm, 320 halves the encoding.",
    )  # fmt: skip
    clip_quality: int = Field(75, ge=10, le=100, description="JPEG quality of mjpeg clip frames.")
    clip_pre_s: float = Field(
        2.0, ge=0, le=10, description="Seconds before the raise a clip starts (the pre-roll)."
    )
    clip_post_s: float = Field(
        3.0, ge=0, le=30, description="Seconds after the raise a clip goes on."
    )
    clip_queue: int = Field(
        8, ge=1, le=256,
        description="Clips finished but not yet encoded and stored; a clip beyond is skipped "
        "(counted in /readyz cameras.clips).",
    )  # fmt: skip
    detectors: VideoConfig = Field(
        default_factory=VideoConfig, description="Motion, zones and camera-health settings."
    )


class BrokerConfig(Section):
    """Who may use the broker: per-device credentials and an ACL made from the registry by
    ``gridwatch broker config``, and a TLS listener for the embedded broker."""

    auth: bool = Field(
        False,
        description="Use the broker accounts written by `gridwatch broker config` (run it "
        "first): the embedded broker refuses anonymous clients and enforces the ACL, and "
        "gridwatch connects as service_username with the password kept in files_dir (also "
        "to an external broker given these files), unless mqtt.username is set.",
    )
    service_username: str = Field(
        "gridwatch",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="gridwatch's own broker account (reads uplinks, publishes events and "
        "its status). Must not be a device id.",
    )
    files_dir: Path | None = Field(
        None,
        description="Where `gridwatch broker config` writes passwd, acl, mosquitto.conf and "
        "the service account's password. Unset: <data_dir>/broker.",
    )
    tls_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Embedded broker: also listen for mqtts:// on this port, on "
        "embedded.mqtt_host (needs tls_cert and tls_key).",
    )
    tls_cert: Path | None = Field(None, description="Broker certificate chain (PEM) for TLS.")
    tls_key: Path | None = Field(None, description="Private key (PEM) of tls_cert.")

    @model_validator(mode="after")
    def _tls_needs_cert_and_key(self) -> BrokerConfig:
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("tls_port needs tls_cert and tls_key")
        return self

    def files(self, data_dir: Path) -> Path:
        return (self.files_dir or Path(data_dir) / "broker").resolve()


MIB = 1024 * 1024


class FieldConfig(Section):
    """The grid worker's side: field reports with photos and videos, patrol check-ins over
    HTTP, and the response resources listed on fire and electrical events."""

    max_photo_bytes: int = Field(
        10 * MIB, ge=1024, description="Largest photo a field report may carry (bytes)."
    )
    max_video_bytes: int = Field(
        50 * MIB, ge=1024, description="Largest video a field report may carry (bytes)."
    )
    max_files: int = Field(6, ge=0, le=50, description="Most photos and videos in one report.")
    photo_types: frozenset[str] = Field(
        frozenset({"image/jpeg", "image/png", "image/webp"}),
        description="Content types accepted as photos (checked against the bytes).",
    )
    video_types: frozenset[str] = Field(
        frozenset({"video/mp4"}), description="Content types accepted as videos."
    )
    max_description_chars: int = Field(
        2000, ge=1, description="Longest description of a field report."
    )
    concurrent_uploads: int = Field(
        2,
        ge=1,
        description="Field reports read at once; more wait. Bounds the memory uploads take "
        "(each up to max_files × the larger size limit).",
    )
    site_radius_m: float = Field(
        50.0,
        ge=0,
        description="A report without a site takes the site of the nearest registered device "
        "within this distance of its location, so it joins that site's events.",
    )
    nearest_per_kind: int = Field(
        2, ge=0, le=20, description="Resources of each kind listed on a fire or electrical event."
    )
    nearest_within_m: float = Field(
        10000.0, gt=0, description="Resources farther than this from the event are not listed."
    )
    checkin_timeout_s: float = Field(
        10.0, gt=0, description="How long a check-in given over HTTP waits for the broker."
    )


class HttpConfig(Section):
    """The HTTP server (health, API, console)."""

    listen: str = Field("127.0.0.1:8080", description="host:port of the HTTP server.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogConfig(Section):
    """Structured logs on standard error."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["json", "text"] = Field("json", description="One JSON object a line, or text.")


class Settings(BaseSettings):
    """Everything gridwatch can be told; see docs/configuration.md for the reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )
    _toml_path: ClassVar[Path | None] = None

    data_dir: Path = Field(
        Path(".gridwatch"), description="Where embedded services, evidence and run files live."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # type: ignore[arg-type]
    db: DbConfig = Field(default_factory=DbConfig)  # type: ignore[arg-type]
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)  # type: ignore[arg-type]
    ingest: IngestConfig = Field(default_factory=IngestConfig)  # type: ignore[arg-type]
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # type: ignore[arg-type]
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)  # type: ignore[arg-type]
    broker: BrokerConfig = Field(default_factory=BrokerConfig)  # type: ignore[arg-type]
    video: VideoSection = Field(default_factory=VideoSection)  # type: ignore[arg-type]
    field: FieldConfig = Field(default_factory=FieldConfig)  # type: ignore[arg-type]
    http: HttpConfig = Field(default_factory=HttpConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_path))
        return tuple(sources)

    @property
    def embedded_mqtt(self) -> bool:
        return self.mqtt.url is None

    @property
    def embedded_db(self) -> bool:
        return self.db.url is None


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what is wrong."""


def _known_env_names() -> set[str]:
    names = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, Section):
            names.update(f"{ENV_PREFIX}{name}_{key}".upper() for key in model.model_fields)
    return names


def _check_environment(environ: dict[str, str]) -> None:
    known = _known_env_names()
    unknown = sorted(
        k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known
    )
    if unknown:
        raise ConfigError(
            "unknown environment variable(s): "
            + ", ".join(unknown)
            + " (see docs/configuration.md for the keys)"
        )


def _describe(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return f"invalid configuration ({origin}):\n" + "\n".join(lines)


def load_settings(
    config_path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the effective settings, or raise ConfigError naming every bad key."""
    env = dict(os.environ if environ is None else environ)
    _check_environment(env)
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"config file {config_path} does not exist")
        try:
            tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    origin = f"{config_path} and {ENV_PREFIX}* environment" if config_path else "environment"
    Settings._toml_path = config_path
    try:
        if environ is None:
            return Settings(**overrides)
        saved = {k: v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
        for key in saved:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.upper().startswith(ENV_PREFIX)})
        try:
            return Settings(**overrides)
        finally:
            for key in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
                del os.environ[key]
            os.environ.update(saved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    finally:
        Settings._toml_path = None


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data with secrets (and URL passwords) hidden."""
    data = settings.model_dump(mode="json")
    for section in data.values():
        if isinstance(section, dict):
            for key, value in section.items():
                if key == "password" and value is not None:
                    section[key] = "********"
                elif key == "url" and isinstance(value, str):
                    section[key] = mask_url(value)
    return data


def mask_url(url: str) -> str:
    """Hide the password part of ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"
