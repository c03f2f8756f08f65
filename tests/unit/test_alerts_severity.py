"""Severity rules: the base table, pre-alarms, escalation rules and raising a workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from alerts.correlation import CorrelationConfig, Scope
from alerts.severity import DEFAULT_RULES, EscalationRule, SeverityRules, raise_severity
from alerts.workflow import open_event
from alerts.workflow_enums import Action, Severity
from detectors.base import Label

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TS0 = T0.timestamp()


@pytest.mark.parametrize(
    ("label", "rule", "expected"),
    [
        (Label("smoke_alarm", "fire", "red"), "alarm", "orange"),
        (Label("residual_current_high", "electrical", "orange"), "alarm", "orange"),
        (Label("cable_overtemp", "electrical", "orange"), "alarm", "orange"),
        (Label("cable_overtemp", "electrical", "yellow"), "pre_alarm", "yellow"),
        (Label("cable_overtemp", "electrical", "orange"), "pre_alarm:cable_temp", "yellow"),
        (Label("flapping", "electrical", "orange"), "cable_temp.pre_alarm", "blue"),
        (Label("pressure_low", "water", "orange"), "low", "yellow"),
        (Label("pressure_drop", "water", "orange"), "drop", "orange"),
        (Label("device_offline", "device", "yellow"), "offline", "blue"),
        (Label("low_battery", "device", "blue"), "low", "blue"),
        (Label("tamper", "device", "yellow"), "tamper", "yellow"),
        (Label("device_fault", "device", "yellow"), "fault", "blue"),
        (Label("camera_fault", "device", "orange"), "frozen", "blue"),
        (Label("zone_intrusion", "video", "yellow"), "zone", "orange"),
        (Label("something_new", "water", "red"), "x", "red"),  # unknown: the hit's own
    ],
)
def test_base_severity(label: Label, rule: str, expected: str) -> None:
    hit = label.hit("d1", "det", rule, "raised", TS0)
    assert DEFAULT_RULES.hit_severity(hit) == Severity(expected)


def test_partial_tables_keep_the_other_defaults() -> None:
    rules = SeverityRules.model_validate(
        {"base": {"smoke_alarm": "red"}, "pre_alarm": {"smoke_alarm": "yellow"}}
    )
    assert rules.base["smoke_alarm"] is Severity.RED
    assert rules.base["device_offline"] is Severity.BLUE
    assert rules.pre_alarm == {"cable_overtemp": Severity.YELLOW, "smoke_alarm": Severity.YELLOW}
    assert SeverityRules.model_validate({"escalations": []}).escalations == ()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValidationError, match="colour"):
        SeverityRules.model_validate({"colour": {}})
    with pytest.raises(ValidationError, match=r"base\.smoke_alarm"):
        SeverityRules.model_validate({"base": {"smoke_alarm": "purple"}})
    with pytest.raises(ValidationError, match="unique"):
        SeverityRules.model_validate(
            {"escalations": [{"name": "a", "severity": "red"}, {"name": "a", "severity": "red"}]}
        )


@pytest.mark.parametrize("model", [SeverityRules, EscalationRule, CorrelationConfig])
def test_every_config_field_is_described(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"


def test_escalation_rules() -> None:
    r = DEFAULT_RULES
    assert r.escalation("fire", ["s1"], ["smoke_alarm"]) == (None, ())
    assert r.escalation("fire", ["s1", "s2"], ["smoke_alarm"]) == (
        Severity.RED,
        ("two_fire_devices_at_site",),
    )
    assert r.escalation("fire", ["s1"], ["smoke_alarm", "cable_overtemp"])[0] is Severity.RED
    # the same devices in another category do not match a fire rule
    assert r.escalation("electrical", ["e1", "e2"], ["cable_overtemp"]) == (None, ())
    any_rule = EscalationRule(name="n", severity=Severity.YELLOW, any_types=frozenset({"a", "b"}))
    assert any_rule.matches("water", ["w"], ["b"]) and not any_rule.matches("water", ["w"], ["c"])


def test_raise_severity_records_why_and_tightens_the_deadline() -> None:
    ws, _ = open_event(Severity.ORANGE, "fire", "smoke_alarm", T0)
    assert ws.due == T0 + timedelta(minutes=30)
    now = T0 + timedelta(minutes=4)
    new, entry = raise_severity(ws, Severity.RED, now, reason="two_fire_devices_at_site")
    assert new.severity is Severity.RED and new.state is ws.state
    assert new.due == T0 + timedelta(minutes=10)  # red: dispatched within 10 min of the report
    assert entry.action is Action.COMMENT and entry.actor_id == "system"
    assert entry.reason == "severity orange → red: two_fire_devices_at_site"
    assert entry.due == new.due and entry.at == now
    with pytest.raises(ValueError):
        raise_severity(new, Severity.ORANGE, now, reason="lower")


def test_correlation_config() -> None:
    cfg = CorrelationConfig.model_validate({"window": "PT10M", "scopes": {"video": "device"}})
    assert cfg.window_s == 600
    assert cfg.scopes["video"] is Scope.DEVICE and cfg.scopes["fire"] is Scope.SITE
    with pytest.raises(ValidationError, match="device"):
        CorrelationConfig.model_validate({"scopes": {"device": "site"}})
    with pytest.raises(ValidationError, match="itself"):
        CorrelationConfig.model_validate({"links": {"fire": ["fire"]}})
    with pytest.raises(ValidationError, match="windw"):
        CorrelationConfig.model_validate({"windw": 10})
