"""Broker access made by `gridwatch broker config` from the registry, enforced by a real
mosquitto: per-device credentials, an ACL that keeps each device to its own uplink topics,
gridwatch's own account, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.broker_access import verify_password
from gridwatch.embedded import MosquittoBroker
from tests.integration.conftest import make_settings, running_service
from tests.integration.mqtt_device import NO_SUBSCRIBERS, NOT_AUTHORISED, DeviceClient, accepted
from tests.services import free_tcp_port, running_broker, service_root

pytestmark = pytest.mark.integration

GRIDWATCH = str(Path(sys.executable).with_name("gridwatch"))
DEVICES = [("SD-1", "smoke_detector"), ("SD-2", "smoke_detector"), ("BAD:1", "smoke_detector")]


@dataclass
class Access:
    conninfo: str
    files: Path
    tls_dir: Path
    passwords: dict[str, str]
    cli_stderr: str

    def config(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
            "GRIDWATCH_DB_URL": self.conninfo,
            "GRIDWATCH_MQTT_URL": "mqtt://127.0.0.1:1",  # external broker: nothing to reload
            "GRIDWATCH_BROKER_FILES_DIR": str(self.files),
            "GRIDWATCH_DATA_DIR": str(self.files.parent / "data"),
        }
        done = subprocess.run(
            [GRIDWATCH, "broker", "config", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        self.cli_stderr += done.stderr
        for row in csv.DictReader(io.StringIO(done.stdout)):
            self.passwords[row["username"]] = row["password"]
        return done


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    cert.chmod(0o644)
    if os.geteuid() == 0:
        shutil.chown(key, "root", "mosquitto")
    key.chmod(0o640)
    return cert, key


@pytest.fixture(scope="module")
def access(database: str) -> Iterator[Access]:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany("INSERT INTO devices (device_id, type) VALUES (%s, %s)", DEVICES)
    with service_root("auth") as root:
        made = Access(database, root / "broker", root / "tls", {}, "")
        made.tls_dir.mkdir(mode=0o755)
        made.config()
        yield made


@pytest.fixture(scope="module")
def broker(access: Access) -> Iterator[tuple[MosquittoBroker, int, Path]]:
    cert, key = make_certificate(access.tls_dir)
    tls_port = free_tcp_port()
    tls = f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
    with running_broker(
        password_file=access.files / "passwd", acl_file=access.files / "acl", extra_conf=tls
    ) as running:
        yield running, tls_port, cert


def reading(seq: int) -> bytes:
    return orjson.dumps(
        {"ts": int(time.time() * 1000), "seq": seq, "values": {"smoke_obscuration_db_m": 0.01}}
    )


async def readings_of(conninfo: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute("SELECT device_id, count(*) FROM readings GROUP BY 1")
        return {d: int(n) for d, n in await cur.fetchall()}


def test_config_issues_accounts_for_devices_and_gridwatch_and_names_what_it_skips(
    access: Access,
) -> None:
    assert set(access.passwords) == {"SD-1", "SD-2"}
    assert "skipped BAD:1" in access.cli_stderr
    passwd = (access.files / "passwd").read_text()
    users = [line.split(":", 1)[0] for line in passwd.splitlines()]
    assert users == ["SD-1", "SD-2", "gridwatch"]
    acl = (access.files / "acl").read_text()
    assert "pattern write gridwatch/v1/up/%u/telemetry" in acl and "user gridwatch" in acl
    service = (access.files / "service-password").read_text().strip()
    assert (access.files / "service-password").stat().st_mode & 0o077 == 0
    with psycopg.connect(access.conninfo) as conn:
        rows = dict(conn.execute("SELECT username, password_hash FROM broker_accounts").fetchall())
        audit = conn.execute(
            "SELECT detail::text FROM audit_log WHERE action = 'broker.config'"
        ).fetchall()
    assert verify_password(service, rows["gridwatch"])
    for username, password in access.passwords.items():
        assert rows[username].startswith("$7$101$") and verify_password(password, rows[username])
        assert password not in passwd and password not in rows[username]
        assert all(password not in text for (text,) in audit)
        assert password not in access.cli_stderr  # shown once, on standard output only
    assert audit, "the run is audited"


async def test_a_device_publishes_only_under_its_own_prefix(
    access: Access, broker: tuple[MosquittoBroker, int, Path], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    mqtt, _, _ = broker
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        mqtt.url, access.conninfo, tmp_path / "gw",
        broker={"auth": True, "files_dir": str(access.files)},
        mqtt={"client_id": "gw-auth"},
    )  # fmt: skip
    async with running_service(settings) as gw:  # subscribes as `gridwatch`: the ACL allows it
        with DeviceClient(mqtt.url, "SD-1", access.passwords["SD-1"]) as sd1:
            assert await asyncio.to_thread(sd1.connect)
            up = "gridwatch/v1/up"
            first = await asyncio.to_thread(sd1.publish, f"{up}/SD-1/telemetry", reading(1))
            assert accepted(first)
            for topic in (
                f"{up}/SD-2/telemetry",  # another device's prefix
                f"{up}/SD-1/nonsense",  # not an uplink kind
                f"{up}/SD-1/telemetry/" + "x" * 5000,  # overlong
                "gridwatch/v1/events/440999/x",  # posing as gridwatch's feed
            ):
                code = await asyncio.to_thread(sd1.publish, topic, reading(2))
                assert code == NOT_AUTHORISED, topic
            # one connection keeps order: once this one is stored, a refused one would be too
            last = await asyncio.to_thread(sd1.publish, f"{up}/SD-1/telemetry", reading(3))
            assert accepted(last)
            await gw.wait_for(lambda: gw.handled() >= 2)
        assert await readings_of(access.conninfo) == {"SD-1": 2}
        assert gw.service.pipeline is not None
        assert gw.service.pipeline.stats.rejected == {}

        refused = [
            ("SD-1", "wrong"),
            ("SD-1", access.passwords["SD-2"]),  # another device's password
            ("BAD:1", "x"),  # skipped: has no account
            (None, None),  # anonymous
        ]
        for username, password in refused:
            with DeviceClient(mqtt.url, username, password) as client:
                assert not await asyncio.to_thread(client.connect), username
                assert client.connack in ("Not authorized", "Bad user name or password")
    for secret in [*access.passwords.values(), (access.files / "service-password").read_text()]:
        assert secret.strip() not in caplog.text


async def test_devices_and_gridwatch_over_tls(
    access: Access, broker: tuple[MosquittoBroker, int, Path], tmp_path: Path
) -> None:
    _, tls_port, cert = broker
    url = f"mqtts://127.0.0.1:{tls_port}"
    settings = make_settings(
        url, access.conninfo, tmp_path / "gw",
        broker={"auth": True, "files_dir": str(access.files)},
        mqtt={"client_id": "gw-tls", "tls_ca_file": str(cert)},
        outputs={"feed_enabled": False},
    )  # fmt: skip
    before = (await readings_of(access.conninfo)).get("SD-2", 0)
    async with running_service(settings) as gw:
        assert gw.service.source is not None and gw.service.source.endpoint.tls
        with DeviceClient(url, "SD-2", access.passwords["SD-2"], ca_file=cert) as sd2:
            assert await asyncio.to_thread(sd2.connect)
            topic = "gridwatch/v1/up/SD-2/telemetry"
            code = await asyncio.to_thread(sd2.publish, topic, reading(1))
            assert accepted(code)
            await gw.wait_for(lambda: gw.handled() >= 1)
    assert (await readings_of(access.conninfo))["SD-2"] == before + 1
    # a client that does not trust the broker's certificate (system CAs) never gets to speak
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_rotation_and_new_devices_take_effect_on_reload(
    access: Access, broker: tuple[MosquittoBroker, int, Path]
) -> None:
    mqtt, _, _ = broker
    old = access.passwords["SD-1"]
    with psycopg.connect(access.conninfo) as conn:
        conn.execute("INSERT INTO devices (device_id, type) VALUES ('SD-3', 'smoke_detector')")
        conn.execute("DELETE FROM devices WHERE device_id = 'SD-2'")
    done = access.config("--rotate", "SD-1")
    assert "1 removed" in done.stderr
    assert access.passwords["SD-1"] != old and "SD-3" in access.passwords
    assert mqtt.pid is not None
    os.kill(mqtt.pid, signal.SIGHUP)  # what `broker config` does for the embedded broker

    def connects(username: str, password: str) -> bool:
        with DeviceClient(mqtt.url, username, password) as client:
            return client.connect()

    with connected_eventually(mqtt.url, "SD-1", access.passwords["SD-1"]):
        pass  # the reload is asynchronous to the signal
    assert not connects("SD-1", old)
    assert connects("SD-3", access.passwords["SD-3"])
    assert not connects("SD-2", access.passwords["SD-2"])  # no longer registered


@contextlib.contextmanager
def connected_eventually(url: str, username: str, password: str) -> Iterator[DeviceClient]:
    """A device connection, retried while a reload (asynchronous to its signal) completes."""
    deadline = time.monotonic() + 10
    while True:
        client = DeviceClient(url, username, password)
        if client.connect():
            break
        client.close()
        assert time.monotonic() < deadline, f"{username} still refused"
        time.sleep(0.05)
    try:
        yield client
    finally:
        client.close()


def publish_taken(device: DeviceClient, topic: str, payload: bytes) -> bool:
    """Publish until a subscriber takes it: "running" is logged before gridwatch's
    subscription completes, and the broker drops a message nobody subscribes to (16)."""
    deadline = time.monotonic() + 10
    while (code := device.publish(topic, payload)) == NO_SUBSCRIBERS:
        assert time.monotonic() < deadline, "gridwatch never subscribed"
        time.sleep(0.05)
    return code == 0


def test_embedded_broker_with_auth_and_tls_end_to_end() -> None:
    """The README's steps: import, `broker config`, `run` with broker.auth on embedded
    defaults (plus a TLS listener); a device added later works after `broker config`
    again, which reloads the running broker."""
    from tests.integration.gridwatch_process import started
    from tests.integration.test_cli_e2e import Cli
    from tests.unit.registry_data import collection, device, jsonl, sample_features, write

    with service_root("e2e-auth") as root:
        cli = Cli(root)
        (root / "tls").mkdir(mode=0o755)
        cert, key = make_certificate(root / "tls")
        tls_port = free_tcp_port()
        cli.env |= {
            "GRIDWATCH_BROKER_AUTH": "true",
            "GRIDWATCH_BROKER_TLS_PORT": str(tls_port),
            "GRIDWATCH_BROKER_TLS_CERT": str(cert),
            "GRIDWATCH_BROKER_TLS_KEY": str(key),
        }
        before_run = cli("run", check=False)  # passwords first: a clear refusal, not a hang
        assert before_run.returncode == 2 and "gridwatch broker config" in before_run.stderr
        cli("broker", "config")  # the schema and gridwatch's own account
        grids = collection(sample_features()).decode()
        cli("grids", "import", str(write(root / "g.geojson", grids)))
        cli("devices", "import", str(write(root / "d.jsonl", jsonl([device("SD-100")]))))
        passwords = dict(csv.reader(io.StringIO(cli("broker", "config").stdout)))
        plain, secure = f"mqtt://127.0.0.1:{cli.mqtt_port}", f"mqtts://127.0.0.1:{tls_port}"
        with started(cli.env, cli.http_port) as gw:
            gw.wait_health(lambda h: h["components"]["mqtt"])
            with DeviceClient(plain) as anonymous:
                assert not anonymous.connect()
            for seq, url, ca in ((1, plain, None), (2, secure, cert)):
                with DeviceClient(url, "SD-100", passwords["SD-100"], ca_file=ca) as sd:
                    assert sd.connect(), url
                    assert publish_taken(sd, "gridwatch/v1/up/SD-100/telemetry", reading(seq))
            cli.wait_stored(2)

            cli("devices", "import", str(write(root / "e.jsonl", jsonl([device("SD-101")]))))
            done = cli("broker", "config")
            assert "reloaded" in done.stderr
            new = dict(csv.reader(io.StringIO(done.stdout)))
            assert set(new) == {"username", "SD-101"}  # the others keep their passwords
            with connected_eventually(plain, "SD-101", new["SD-101"]) as sd:
                assert accepted(sd.publish("gridwatch/v1/up/SD-101/telemetry", reading(1)))
                assert sd.publish("gridwatch/v1/up/SD-100/telemetry", reading(3)) == NOT_AUTHORISED
            cli.wait_stored(3)
