from pathlib import Path

import pytest

from gridwatch.config import ConfigError, load_settings, mask_url, masked


def test_defaults_are_embedded() -> None:
    s = load_settings(environ={})
    assert s.embedded_mqtt and s.embedded_db
    assert s.http.listen == "127.0.0.1:8080"
    assert s.data_dir == Path(".gridwatch")


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('data_dir = "/srv/gw"\n[mqtt]\nurl = "mqtt://file:1883"\ntopic_root = "x/v1"\n')
    s = load_settings(cfg, environ={"GRIDWATCH_MQTT_URL": "mqtts://env:8883"})
    assert s.mqtt.url == "mqtts://env:8883"
    assert s.mqtt.topic_root == "x/v1"
    assert s.data_dir == Path("/srv/gw")


def test_essential_environment_names() -> None:
    s = load_settings(
        environ={
            "GRIDWATCH_DATA_DIR": "/d",
            "GRIDWATCH_HTTP_LISTEN": "0.0.0.0:9000",
            "GRIDWATCH_DB_URL": "postgresql://u@h/db",
            "GRIDWATCH_MQTT_TOPIC_ROOT": "a/b",
        }
    )
    assert (s.data_dir, s.http.port, s.db.url, s.mqtt.topic_root) == (
        Path("/d"),
        9000,
        "postgresql://u@h/db",
        "a/b",
    )


def test_unknown_file_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text("[mqtt]\nkeepalive = 10\n[nosuch]\nx = 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "mqtt.keepalive: unknown key" in str(err.value)
    assert "nosuch: unknown key" in str(err.value)


def test_unknown_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="GRIDWATCH_MQTT_URLL"):
        load_settings(environ={"GRIDWATCH_MQTT_URLL": "mqtt://x"})


def test_mistyped_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.keepalive_s"):
        load_settings(environ={"GRIDWATCH_MQTT_KEEPALIVE_S": "soon"})
    with pytest.raises(ConfigError, match=r"http\.listen"):
        load_settings(environ={"GRIDWATCH_HTTP_LISTEN": "8080"})
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        load_settings(environ={"GRIDWATCH_MQTT_URL": "http://broker"})


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "none.toml", environ={})


def test_secrets_masked() -> None:
    s = load_settings(
        environ={
            "GRIDWATCH_MQTT_PASSWORD": "hunter2",
            "GRIDWATCH_DB_URL": "postgresql://gw:pw@db/gw",
        }
    )
    shown = masked(s)
    assert shown["mqtt"]["password"] == "********"
    assert "pw" not in shown["db"]["url"]
    assert mask_url("mqtt://host:1883") == "mqtt://host:1883"


def test_configuration_reference_is_current() -> None:
    from gridwatch.config_reference import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `gridwatch config reference > docs/configuration.md`"
    )


def test_detector_reference_is_current() -> None:
    from detectors.reference import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "detectors.md"
    assert doc.read_text(encoding="utf-8") == render(), (
        "docs/detectors.md is stale: run `python -m detectors.reference > docs/detectors.md`"
    )
