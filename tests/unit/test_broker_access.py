"""Broker accounts and the files made from them (pure parts; the broker enforcing them is in
tests/integration/test_broker_access.py)."""

from __future__ import annotations

import string
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.broker_access import (
    Account,
    hash_password,
    new_password,
    render_acl,
    render_password_file,
    unusable_username,
    verify_password,
)
from gridwatch.broker_files import BrokerFiles, credentials_csv, render_broker_conf
from gridwatch.config import load_settings


def test_our_hash_is_mosquittos_pbkdf2_sha512_form() -> None:
    encoded = hash_password("s3cret", salt=b"0123456789ab")
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi")
    assert len(digest) == 88  # 64 bytes, base64
    assert verify_password("s3cret", encoded) and not verify_password("s3cre", encoded)


def test_a_hash_written_by_mosquitto_passwd_verifies(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "SD-1", "pw"], check=True)
    user, encoded = passwd.read_text().strip().split(":", 1)
    assert user == "SD-1" and encoded.startswith("$7$")
    assert verify_password("pw", encoded) and not verify_password("PW", encoded)


@settings(database=None, max_examples=50)
@given(text=st.text(max_size=80))
def test_anything_that_is_not_a_hash_never_verifies(text: str) -> None:
    assert not verify_password("pw", text)


def test_passwords_are_random_and_url_safe() -> None:
    made = {new_password() for _ in range(50)}
    assert len(made) == 50 and all(len(p) == 32 and p.isascii() for p in made)
    url_safe = set(string.ascii_letters + string.digits + "-_")
    assert all(set(p) <= url_safe for p in made)


def test_user_names_mosquitto_cannot_take_are_named() -> None:
    assert unusable_username("SD-440999001001-01-0001") is None
    assert "':'" in (unusable_username("vendor:42") or "")
    assert unusable_username("") == "empty"
    assert unusable_username("a/b") and unusable_username("a+b") and unusable_username("a\nb")


def test_password_file_lines_are_sorted_user_colon_hash() -> None:
    accounts = [Account("b", "device", "$7$h2"), Account("a", "service", "$7$h1")]
    assert render_password_file(accounts) == "a:$7$h1\nb:$7$h2\n"
    assert "$7$" not in repr(accounts[0])


def test_the_acl_keeps_devices_to_their_own_uplink_topics() -> None:
    acl = render_acl("county/v1/", "gw")
    lines = acl.splitlines()
    assert "user gw" in lines and "topic readwrite county/v1/up/#" in lines
    patterns = [line for line in lines if line.startswith("pattern")]
    assert patterns == [
        f"pattern write county/v1/up/%u/{kind}"
        for kind in ("telemetry", "event", "heartbeat", "status")
    ]
    # nothing a device could read, and nothing before `user` (which would apply to anyone)
    assert not any(line.startswith("topic") for line in lines[: lines.index("user gw")])


def test_the_conf_snippet_names_the_files_queue_and_tls(tmp_path: Path) -> None:
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    settings = load_settings(
        environ={}, broker={"tls_port": 8883, "tls_cert": cert, "tls_key": key}
    )
    conf = render_broker_conf(BrokerFiles(tmp_path), settings)
    for line in (
        "allow_anonymous false", f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}", "max_queued_messages 1000000", "listener 8883",
        f"certfile {tmp_path / 'c.pem'}",
    ):  # fmt: skip
        assert line in conf.splitlines(), line


def test_new_credentials_as_csv() -> None:
    assert credentials_csv({"b": "p2", "a": "p,1"}) == 'username,password\na,"p,1"\nb,p2\n'
