"""The served OpenAPI document against the real answers: every status the API gives is
documented for its operation, and every body validates against the documented schema.

``jsonschema`` is not among the project's dependencies, so :func:`validate` below checks
the subset of JSON Schema 2020-12 the document uses, and fails on any keyword it does not
know (so the check cannot pass silently by ignoring one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.integration.test_api import (  # noqa: F401  (fixtures used by name)
    G1,
    G3,
    Api,
    C,
    World,
    api,
    in_grid,
    world,
)

pytestmark = pytest.mark.integration

_ANNOTATIONS = {"title", "description", "default", "examples"}
_TYPES: dict[str, Any] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    found: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return found


def validate(value: Any, schema: dict[str, Any], doc: dict[str, Any], at: str = "$") -> None:
    """Raise AssertionError naming the place where ``value`` breaks ``schema``."""
    unknown = set(schema) - _ANNOTATIONS - {
        "$ref", "anyOf", "enum", "type", "format", "properties", "required",
        "additionalProperties", "propertyNames", "items", "minimum", "maximum", "minItems",
        "maxItems", "maxLength",
    }  # fmt: skip
    assert not unknown, f"{at}: the check does not know {sorted(unknown)}"
    if "$ref" in schema:
        validate(value, _resolve(doc, schema["$ref"]), doc, at)
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, doc, at)
            except AssertionError as exc:
                problems.append(str(exc))
            else:
                break
        else:
            raise AssertionError(f"{at}: matches no option of anyOf: {problems}")
    if "enum" in schema:
        assert value in schema["enum"], f"{at}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(_TYPES[n](value) for n in names), f"{at}: {value!r} is not {names}"
    if schema.get("format") == "date-time" and isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert moment.tzinfo is not None, f"{at}: {value!r} has no offset"
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value), f"{at}: {value} < minimum"
        assert value <= schema.get("maximum", value), f"{at}: {value} > maximum"
    if isinstance(value, str) and "maxLength" in schema:
        assert len(value) <= schema["maxLength"], f"{at}: too long"
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), f"{at}: too few items"
        assert len(value) <= schema.get("maxItems", len(value)), f"{at}: too many items"
        if "items" in schema:
            for i, item in enumerate(value):
                validate(item, schema["items"], doc, f"{at}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{at}: missing {sorted(missing)}"
        for key, item in value.items():
            if "propertyNames" in schema:
                validate(key, schema["propertyNames"], doc, f"{at}.<{key}>")
            if key in properties:
                validate(item, properties[key], doc, f"{at}.{key}")
                continue
            extra = schema.get("additionalProperties", True)
            assert extra is not False, f"{at}: unexpected property {key!r}"
            if isinstance(extra, dict):
                validate(item, extra, doc, f"{at}.{key}")


def test_the_checker_catches_what_it_should() -> None:
    doc = {"components": {"schemas": {"N": {"type": ["integer", "null"], "minimum": 0}}}}
    shape = {
        "type": "object",
        "required": ["n", "when"],
        "properties": {
            "n": {"$ref": "#/components/schemas/N"},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        },
        "additionalProperties": False,
    }
    validate({"n": None, "when": "2026-11-22T08:00:00Z", "tags": ["a"]}, shape, doc)
    for bad in (
        {"n": 1},
        {"n": -1, "when": "2026-11-22T08:00:00Z"},
        {"n": True, "when": "2026-11-22T08:00:00Z"},
        {"n": 1, "when": "2026-11-22T08:00:00"},
        {"n": 1, "when": "2026-11-22T08:00:00Z", "tags": ["c"]},
        {"n": 1, "when": "2026-11-22T08:00:00Z", "other": 1},
    ):
        with pytest.raises(AssertionError):
            validate(bad, shape, doc)
    with pytest.raises(AssertionError, match="does not know"):
        validate(1, {"oneOf": []}, doc)


async def test_answers_match_the_served_document(api: Api, world: World) -> None:  # noqa: F811
    admin, town = world.tokens["admin"], world.tokens["town1"]
    status, doc = await api.get("/api/v1/openapi.json", admin)
    assert status == 200 and doc["openapi"].startswith("3.1")

    def check(method: str, template: str, status: int, body: Any) -> None:
        operation = doc["paths"][template][method]
        documented = operation["responses"]
        assert str(status) in documented, f"{method} {template} answered an undocumented {status}"
        response = documented[str(status)]
        if "$ref" in response:
            response = _resolve(doc, response["$ref"])
        schema = response["content"]["application/json"]["schema"]
        validate(body, schema, doc, f"{method} {template} {status}")

    some = in_grid(world, G1)[1]
    other = in_grid(world, G3)[1]
    calls: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("get", "/api/v1/events", "/api/v1/events", admin, {"limit": 3}),
        ("get", "/api/v1/events", "/api/v1/events", town, {"grid": C}),  # 403
        ("get", "/api/v1/events", "/api/v1/events", admin, {"limit": 0}),  # 400
        ("get", "/api/v1/events", "/api/v1/events", admin, {"grid": "nowhere"}),  # 404
        ("get", "/api/v1/events", "/api/v1/events", "", {}),  # 401
        ("get", "/api/v1/events/{id}", f"/api/v1/events/{some}", town, {}),
        ("get", "/api/v1/events/{id}", f"/api/v1/events/{other}", town, {}),  # 404
        ("get", "/api/v1/grids", "/api/v1/grids", admin, {"geometry": "true"}),
        ("get", "/api/v1/grids", "/api/v1/grids", town, {"subtree": C}),  # 403
        ("get", "/api/v1/grids/{code}", f"/api/v1/grids/{G1}", town, {}),
        ("get", "/api/v1/grids/{code}", f"/api/v1/grids/{C}", admin, {}),
        ("get", "/api/v1/grids/{code}", f"/api/v1/grids/{C}", town, {}),  # 404
        ("get", "/api/v1/devices", "/api/v1/devices", admin, {"limit": 2}),
        ("get", "/api/v1/devices/{id}", "/api/v1/devices/sd-g1-1", admin, {}),  # with state
        ("get", "/api/v1/devices/{id}", "/api/v1/devices/cam-g3-1", admin, {}),  # without
        ("get", "/api/v1/figures", "/api/v1/figures", admin, {}),
        ("get", "/api/v1/figures", "/api/v1/figures", town, {"since": "2020-01-01"}),
        ("get", "/api/v1/figures", "/api/v1/figures", town, {"node": C}),  # 403
        ("get", "/api/v1/openapi.json", "/api/v1/openapi.json", admin, {}),
    ]
    seen_statuses = set()
    for method, template, path, token, params in calls:
        status, body = await api.get(path, token or None, **params)
        seen_statuses.add(status)
        check(method, template, status, body)
    assert {200, 400, 401, 403, 404} <= seen_statuses

    action = "/api/v1/events/{id}/actions"
    lead = world.tokens["lead_v1"]
    for token, body in [
        (admin, {"action": "comment", "reason": "核实中"}),  # 200
        (lead, {"action": "verify"}),  # 409
        (world.tokens["county_viewer"], {"action": "comment", "reason": "x"}),  # 403
        (lead, {"action": "dispatch"}),  # 422: no assignee
        (lead, {"action": 7}),  # 400
    ]:
        status, answer = await api.act(some, token, body)
        check("post", action, status, answer)
    status, answer = await api.act(other, lead, {"action": "comment", "reason": "x"})
    assert status == 404
    check("post", action, status, answer)

    # the request bodies used above are valid ActionRequests, as documented
    request_schema = doc["paths"][action]["post"]["requestBody"]["content"]["application/json"]
    validate(
        {"action": "dispatch", "reason": "x", "assignee": {"id": "m1", "role": "grid_member"}},
        request_schema["schema"],
        doc,
    )
    with pytest.raises(AssertionError):
        validate({"action": "auto_close"}, request_schema["schema"], doc)
