"""The embedded mosquitto and PostgreSQL, exercised against the real programs."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gridwatch.embedded import (
    MissingBinary,
    MosquittoBroker,
    PortInUse,
    PostgresCluster,
    PrivilegeError,
    ServiceStartError,
)
from gridwatch.embedded.binaries import find_binary, find_postgres_bin_dir, find_postgres_binary
from gridwatch.embedded.privileges import (
    can_traverse,
    lookup_service_user,
    prepare_state_dir,
    short_hash,
    socket_dir_for,
)
from tests.services import free_tcp_port, running_broker, service_root

pytestmark = pytest.mark.integration

WAIT = 15.0  # seconds: generous for a loaded CI machine, never slept, only waited on
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (service users)")


class Client:
    """A paho MQTT 5 client on its network thread, with waits instead of sleeps."""

    def __init__(
        self,
        broker: MosquittoBroker,
        client_id: str = "",
        *,
        clean_start: bool = True,
        session_expiry: int | None = None,
        manual_ack: bool = False,
        window: int = 200,
    ) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present = False
        self._connected = threading.Event()
        self._connect_rc: ReasonCode | None = None
        self._subscribed: dict[int, list[ReasonCode]] = {}
        self._subscribed_cond = threading.Condition()
        self._window = threading.BoundedSemaphore(window)
        self._unacked = 0
        self._acked_cond = threading.Condition()
        self._properties: Properties | None = None
        if session_expiry is not None:
            # paho's Properties has no annotations.
            self._properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            self._properties.SessionExpiryInterval = session_expiry
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        # paho's own window matches ours; bounding it ourselves avoids the stall measured
        # when QoS 1 is published faster than paho's window with an unbounded queue.
        self.paho.max_inflight_messages_set(window)
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_publish = self._on_publish
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)

    def __enter__(self) -> Self:
        host, port = self.broker.host, self.broker.port
        self.paho.connect(host, port, clean_start=self.clean_start, properties=self._properties)
        self.paho.loop_start()
        assert self._connected.wait(WAIT), "no CONNACK"
        assert self._connect_rc is not None and not self._connect_rc.is_failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def _on_connect(
        self, _c: object, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        self._connect_rc = rc
        self.session_present = flags.session_present
        self._connected.set()

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        with self._subscribed_cond:
            self._subscribed[mid] = codes
            self._subscribed_cond.notify_all()

    def _on_publish(self, _c: object, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
        assert not rc.is_failure or rc.value == 16, rc  # 16: no matching subscribers
        self._window.release()
        with self._acked_cond:
            self._unacked -= 1
            self._acked_cond.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, mid = self.paho.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        with self._subscribed_cond:
            assert self._subscribed_cond.wait_for(lambda: mid in self._subscribed, WAIT)
            assert all(code.value == qos for code in self._subscribed[mid])

    def publish(
        self, topic: str, payloads: Iterable[bytes], *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and return once the broker has acknowledged every message."""
        for payload in payloads:
            assert self._window.acquire(timeout=WAIT), "publish window never reopened"
            with self._acked_cond:
                self._unacked += 1
            info = self.paho.publish(topic, payload, qos=qos, retain=retain)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
        with self._acked_cond:
            assert self._acked_cond.wait_for(lambda: self._unacked == 0, WAIT)

    def receive(self, count: int) -> list[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=WAIT) for _ in range(count)]


# -- mosquitto -----------------------------------------------------------------------------


def test_publish_qos1_and_receive_it(mosquitto_broker: MosquittoBroker) -> None:
    assert mosquitto_broker.url == f"mqtt://127.0.0.1:{mosquitto_broker.port}"
    with Client(mosquitto_broker) as subscriber, Client(mosquitto_broker) as publisher:
        subscriber.subscribe("test/embedded/roundtrip")
        publisher.publish("test/embedded/roundtrip", [b"hello"])
        (message,) = subscriber.receive(1)
    assert message.payload == b"hello"
    assert message.qos == 1


def test_persistent_session_gets_backlog_beyond_default_queue(
    mosquitto_broker: MosquittoBroker,
) -> None:
    count = 2500  # mosquitto's default max_queued_messages is 1000
    topic = "test/embedded/backlog"
    with Client(mosquitto_broker, "gw-backlog", session_expiry=300) as away:
        away.subscribe(topic)
    with Client(mosquitto_broker) as publisher:
        publisher.publish(topic, (str(i).encode() for i in range(count)))
    with Client(mosquitto_broker, "gw-backlog", clean_start=False, session_expiry=300) as back:
        assert back.session_present
        received = back.receive(count)
    assert [int(m.payload) for m in received] == list(range(count))


def test_subscriber_acking_in_batches_is_not_capped(mosquitto_broker: MosquittoBroker) -> None:
    # With mosquitto's default max_inflight_messages (20) this subscriber, which sends no
    # Receive Maximum, would get 20 messages and then nothing until it acknowledges.
    batch = 3000
    topic = "test/embedded/batch"
    with Client(mosquitto_broker, manual_ack=True) as subscriber:
        subscriber.subscribe(topic)
        with Client(mosquitto_broker) as publisher:
            publisher.publish(topic, (b"x" for _ in range(batch)))
        received = subscriber.receive(batch)  # before a single PUBACK from us
        for message in received:
            subscriber.paho.ack(message.mid, message.qos)
    assert len(received) == batch


def test_retained_message_survives_restart() -> None:
    with running_broker() as broker:
        with Client(broker) as publisher:
            publisher.publish("test/embedded/retained", [b"kept"], retain=True)
        broker.stop()
        assert (broker.real_state_dir / "mosquitto.db").is_file()
        broker.start()
        with Client(broker) as subscriber:
            subscriber.subscribe("test/embedded/retained")
            (message,) = subscriber.receive(1)
    assert message.payload == b"kept"
    assert message.retain


def test_port_in_use_is_a_clear_error() -> None:
    with (
        service_root("mqtt") as root,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter,
    ):
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = MosquittoBroker(root / "mosquitto", port=port)
        with pytest.raises(
            PortInUse, match=re.escape(f"port {port} on 127.0.0.1 is already in use")
        ):
            broker.start()
        assert not broker.running


def test_port_taken_after_the_check_is_reported_from_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race the up-front check cannot close: the port is taken between check and bind.
    monkeypatch.setattr("gridwatch.embedded.mosquitto._check_port_free", lambda _h, _p: None)
    with (
        service_root("mqtt") as root,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter,
    ):
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = MosquittoBroker(root / "mosquitto", port=squatter.getsockname()[1])
        with pytest.raises(PortInUse, match=r"(?s)address already in use.*mosquitto\.log"):
            broker.start()
        assert not broker.running


def test_broker_that_exits_reports_its_log() -> None:
    with service_root("mqtt") as root:
        broker = MosquittoBroker(
            root / "mosquitto", port=free_tcp_port(), extra_conf="no_such_option 1"
        )
        with pytest.raises(ServiceStartError, match=r"(?s)exited with status.*no_such_option"):
            broker.start()
        assert not broker.running


@as_root
def test_password_file_must_be_readable_by_the_broker_user() -> None:
    with service_root("mqtt") as root:
        password_file = root / "passwd"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(password_file), "dev-1", "secret"], check=True
        )
        password_file.chmod(0o600)  # root only: mosquitto, once dropped, could not read it
        broker = MosquittoBroker(
            root / "mosquitto", port=free_tcp_port(), password_file=password_file
        )
        with pytest.raises(PrivilegeError, match="not readable by user 'mosquitto'"):
            broker.start()
        shutil.chown(password_file, "root", "mosquitto")
        password_file.chmod(0o640)
        # Ready although the probe is refused ("not authorised"): any CONNACK proves MQTT.
        with broker:
            assert "allow_anonymous false" in broker.conf_path.read_text()


# -- PostgreSQL ----------------------------------------------------------------------------


def _select_one(conninfo: str) -> tuple[object, ...]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT 1, current_user, current_database()").fetchone()
    assert row is not None
    return tuple(row)


def test_cluster_initdb_start_stop_and_reuse() -> None:
    with service_root("pg") as root:
        cluster = PostgresCluster(root / "postgres", port=free_tcp_port())
        cluster.start()
        try:
            assert cluster.timings is not None and cluster.timings.initdb is not None
            assert _select_one(cluster.conninfo) == (1, "gridwatch", "gridwatch")
            with psycopg.connect(cluster.conninfo) as conn:
                settings: dict[str, str] = dict(
                    conn.execute(
                        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                        [["listen_addresses", "fsync", "server_encoding"]],
                    ).fetchall()
                )
                collation = conn.execute(
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()"
                ).fetchone()
            assert settings == {"listen_addresses": "", "fsync": "on", "server_encoding": "UTF8"}
            assert collation == ("C",)

            # A second object on the same state dir attaches, and leaves it running.
            with PostgresCluster(root / "postgres", port=cluster.port) as other:
                assert other.attached
            assert cluster.running

            cluster.stop()
            assert not cluster.running
            cluster.start()
            assert cluster.timings is not None and cluster.timings.initdb is None
            assert _select_one(cluster.conninfo)[0] == 1
        finally:
            cluster.stop()


def test_create_database_from_template(pg_cluster: PostgresCluster) -> None:
    template_info = pg_cluster.create_database("embedded_template")
    with psycopg.connect(template_info) as conn:
        conn.execute("CREATE TABLE marker (note text)")
        conn.execute("INSERT INTO marker VALUES ('from the template')")
    clone_info = pg_cluster.create_database("embedded_clone", template="embedded_template")
    try:
        with psycopg.connect(clone_info) as conn:
            row = conn.execute("SELECT note FROM marker").fetchone()
        assert row == ("from the template",)
    finally:
        pg_cluster.drop_database("embedded_clone")
        pg_cluster.drop_database("embedded_template")


def test_socket_moves_out_of_a_deep_state_dir() -> None:
    with service_root("pg") as root:
        deep = root / ("d" * 60) / "postgres"
        cluster = PostgresCluster(deep, port=free_tcp_port())
        try:
            cluster.start()
            assert cluster.socket_dir != cluster.real_state_dir
            assert len(os.fsencode(cluster.socket_dir / f".s.PGSQL.{cluster.port}")) < 100
            assert _select_one(cluster.conninfo)[0] == 1
        finally:
            cluster.stop()
            if cluster.socket_dir != cluster.real_state_dir:
                shutil.rmtree(cluster.socket_dir)


@as_root
def test_state_in_a_private_tree_is_relocated_not_chmodded() -> None:
    with service_root("private") as root:
        private = root / "home"
        private.mkdir(mode=0o700)
        data_dir = private / "project" / ".gridwatch"
        relocated_home = Path("/var/lib/gridwatch") / short_hash(data_dir)
        cluster = PostgresCluster(data_dir / "postgres", port=free_tcp_port())
        try:
            cluster.start()
            assert _select_one(cluster.conninfo)[0] == 1
            assert (data_dir / "postgres").is_symlink()
            assert cluster.real_state_dir == relocated_home / "postgres"
            assert (relocated_home / "origin").read_text().strip() == str(data_dir)
            assert private.stat().st_mode & 0o777 == 0o700  # untouched
        finally:
            cluster.stop()
            shutil.rmtree(relocated_home, ignore_errors=True)
            with contextlib.suppress(OSError):  # only if no other project uses it
                relocated_home.parent.rmdir()


# -- privileges and binaries (no services) -----------------------------------------------


@as_root
def test_prepare_state_dir_relocation_rules(tmp_path: Path) -> None:
    user = lookup_service_user("mosquitto", package="mosquitto")
    private = tmp_path / "private"  # tmp_path is 0700 under /tmp/pytest-of-root
    fallback = tmp_path / "fallback"
    assert not can_traverse(private, user)

    real = prepare_state_dir(private / "data" / "mosquitto", user, fallback_root=fallback)
    assert real == fallback / short_hash(private / "data") / "mosquitto"
    assert real.stat().st_uid == user.uid
    assert (private / "data" / "mosquitto").resolve() == real
    # Second time round it follows its own symlink instead of relocating again.
    again = prepare_state_dir(private / "data" / "mosquitto", user, fallback_root=fallback)
    assert again == real


def test_short_socket_dir_is_private(tmp_path: Path) -> None:
    long_dir = tmp_path / ("x" * 120)
    chosen = socket_dir_for(long_dir, ".s.PGSQL.5432", None, fallback_parent=tmp_path)
    assert chosen.parent == tmp_path
    assert chosen.stat().st_mode & 0o777 == 0o700
    assert socket_dir_for(tmp_path, ".s.PGSQL.5432", None) == tmp_path


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(MissingBinary, match="apt-get install gridwatch-bogus-package"):
        find_binary("gridwatch-no-such-program", package="gridwatch-bogus-package")
    with pytest.raises(MissingBinary, match=r"apt-get install postgresql\b"):
        find_postgres_binary("pg_no_such_tool")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinary, match=r"initdb not found .*apt-get install postgresql\b"):
        find_postgres_bin_dir(root=tmp_path / "no-postgresql-here")
    assert find_binary("mosquitto").name == "mosquitto"  # found in sbin without PATH
    assert find_binary("initdb").parent.parent.parent == Path("/usr/lib/postgresql")
