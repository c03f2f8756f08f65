"""Tokens and scope, without a database: the token text, its hash, who sees which grid, and
the middleware's answer to a request without a valid token."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from alerts.roles import Actor, Role
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import WorkflowState
from api.auth import PRINCIPAL, Principal, require, scope_condition
from api.auth import principal as principal_of
from api.context import ApiContext
from api.event_actions import change_of
from api.events_api import decode_cursor, encode_cursor
from api.http import make_app
from api.openapi import document
from api.registry_api import redact_url
from gridwatch.config import load_settings
from storage import tokens
from storage.tokens import TokenError, check_new_token, parse_token, token_hash

COUNTY, TOWN, VILLAGE, GRID = "440999", "440999001", "440999001001", "440999001001-01"
OTHER_TOWN, OTHER_GRID = "440999002", "440999002001-01"
PATH = (COUNTY, TOWN, VILLAGE)


def principal(scope: str, role: Role = Role.TOWN_CENTRE, member: str | None = None) -> Principal:
    return Principal("0123456789ab", "test", role, scope, member)


# --- the token text ------------------------------------------------------------------------


def test_a_new_token_has_the_documented_shape_and_parses_to_its_id() -> None:
    token_id, text = tokens.new_token_text()
    assert text.startswith(f"gw_{token_id}_")
    assert len(token_id) == 12 and int(token_id, 16) >= 0
    assert len(text) == 3 + 12 + 1 + 43
    assert parse_token(text) == token_id
    assert tokens.is_token_id(token_id)


def test_new_tokens_differ() -> None:
    texts = {tokens.new_token_text()[1] for _ in range(200)}
    assert len(texts) == 200


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gw_",
        "Bearer gw_0123456789ab_" + "a" * 43,
        "gw_0123456789AB_" + "a" * 43,  # the id is lowercase hex
        "gw_0123456789a_" + "a" * 44,  # id too short
        "gw_0123456789ab_" + "a" * 42,  # secret too short
        "gw_0123456789ab_" + "a" * 44,  # secret too long
        "gw_0123456789ab_" + "a" * 42 + "=",  # not url-safe base64
        "xx_0123456789ab_" + "a" * 43,
        "gw_0123456789ab_" + "a" * 43 + "\n",
    ],
)
def test_malformed_token_texts_do_not_parse(text: str) -> None:
    assert parse_token(text) is None


def test_secrets_may_contain_underscores_and_dashes() -> None:
    text = "gw_0123456789ab_" + "_-" * 21 + "a"
    assert parse_token(text) == "0123456789ab"


def test_the_stored_hash_is_sha256_of_the_whole_text_and_only_that_text_matches() -> None:
    _, text = tokens.new_token_text()
    assert token_hash(text) == hashlib.sha256(text.encode()).digest()
    assert tokens.hash_matches(text, token_hash(text))
    assert not tokens.hash_matches(text[:-1] + ("a" if text[-1] != "a" else "b"), token_hash(text))
    assert not tokens.hash_matches(text, memoryview(b"\x00" * 32).tobytes())


def test_an_issued_token_never_shows_its_secret_in_a_repr() -> None:
    _, text = tokens.new_token_text()
    record = tokens.TokenRecord(
        text[3:15], "x", Role.ADMIN, "*", None, datetime.now(UTC), None, None
    )
    shown = repr(tokens.IssuedToken(record, text))
    assert text not in shown and text[16:] not in shown


@pytest.mark.parametrize(
    ("role", "scope", "member", "problem"),
    [
        ("root", TOWN, None, "unknown role"),
        ("system", TOWN, None, "unknown role"),
        ("town_centre", "*", None, "only an admin"),
        ("viewer", "*", None, "only an admin"),
        ("admin", "", None, "scope"),
        ("admin", " 440999", None, "scope"),
        ("grid_member", GRID, "system", "member id"),
        ("grid_member", GRID, " ", "member id"),
    ],
)
def test_tokens_that_cannot_be_made(
    role: str, scope: str, member: str | None, problem: str
) -> None:
    with pytest.raises(TokenError, match=problem):
        check_new_token(role, scope, member)


def test_tokens_that_can_be_made() -> None:
    assert check_new_token("admin", "*", None) is Role.ADMIN
    assert check_new_token(Role.GRID_MEMBER, GRID, "m1") is Role.GRID_MEMBER
    assert check_new_token("county_centre", COUNTY, None) is Role.COUNTY_CENTRE


def test_the_admin_token_file_is_the_owners_only(tmp_path: Path) -> None:
    path = tokens.write_secret_file(tmp_path / "data" / "admin-token", "gw_secret")
    assert path.read_text() == "gw_secret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens.write_secret_file(path, "gw_other")  # replaced, still 0600, no temporary left
    assert path.read_text() == "gw_other\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["admin-token"]


# --- scope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "grid", "ancestors", "seen"),
    [
        (TOWN, GRID, PATH, True),  # below the scope
        (TOWN, TOWN, (COUNTY,), True),  # the scope itself
        (TOWN, VILLAGE, (COUNTY, TOWN), True),
        (TOWN, OTHER_GRID, (COUNTY, OTHER_TOWN, "440999002001"), False),  # a sibling's
        (TOWN, COUNTY, (), False),  # above the scope
        (GRID, GRID, PATH, True),
        (GRID, "440999001001-02", PATH, False),
        (TOWN, None, (), False),  # unplaced: only '*'
        (COUNTY, None, (), False),
        ("*", None, (), True),
        ("*", OTHER_GRID, (COUNTY, OTHER_TOWN), True),
        (TOWN, "440999001001-01x", PATH[:1], False),  # a code that merely starts alike
    ],
)
def test_a_token_sees_its_scope_subtree(
    scope: str, grid: str | None, ancestors: tuple[str, ...], seen: bool
) -> None:
    assert principal(scope).can_see(grid, ancestors) is seen


codes = st.text(alphabet="0123456789-", min_size=1, max_size=6)


@given(path=st.lists(codes, min_size=1, max_size=5, unique=True), scope=codes)
def test_seeing_is_being_on_the_path_from_the_root(path: list[str], scope: str) -> None:
    *ancestors, grid = path
    assert principal(scope).can_see(grid, ancestors) is (scope in path)
    assert principal("*", Role.ADMIN).can_see(grid, ancestors)


def test_the_actor_is_the_member_if_given_else_the_token() -> None:
    assert principal(TOWN, Role.VILLAGE_LEAD, "v1").actor == Actor("v1", Role.VILLAGE_LEAD)
    assert principal(TOWN).actor == Actor("0123456789ab", Role.TOWN_CENTRE)
    assert not principal(TOWN, Role.VIEWER).may_act
    assert principal(TOWN, Role.GRID_MEMBER).may_act


def test_scope_in_sql_binds_the_scope_as_a_parameter() -> None:
    condition, params = scope_condition(principal("440999'; DROP TABLE x; --"))
    text = condition.as_string(None)
    assert "DROP" not in text and "%(scope)s" in text
    assert params == {"scope": "440999'; DROP TABLE x; --"}
    condition, params = scope_condition(principal("*", Role.ADMIN))
    assert condition.as_string(None) == "TRUE" and params == {}


# --- small pieces of the handlers ----------------------------------------------------------


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    moment = datetime(2026, 11, 22, 8, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, "GE01")) == (moment, "GE01")
    for bad in ("", "!!", "bm90IGpzb24", encode_cursor(moment, "x")[:-3] + "AAA"):
        with pytest.raises(web.HTTPBadRequest):
            decode_cursor(bad)


def _ws(state: State) -> WorkflowState:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return WorkflowState(
        state=state, severity=Severity.RED, category="fire", type="smoke_alarm",
        reported_at=now, updated_at=now,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "action", "change"),
    [
        (State.REPORTED, State.DISPATCHED, Action.DISPATCH, "state_changed"),
        (State.VERIFIED, State.CLOSED, Action.CLOSE, "closed"),
        (State.REPORTED, State.FALSE_ALARM, Action.MARK_FALSE_ALARM, "closed"),
        (State.REPORTED, State.REPORTED, Action.ESCALATE, "escalated"),
        (State.ACCEPTED, State.ACCEPTED, Action.COMMENT, "updated"),
        (State.CLOSED, State.CLOSED, Action.COMMENT, "updated"),
    ],
)
def test_the_change_an_action_publishes(
    before: State, after: State, action: Action, change: str
) -> None:
    assert change_of(_ws(before), _ws(after), action) == change


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/h264", "rtsp://admin:***@10.0.0.5:554/h264"),
        ("rtsp://10.0.0.5/h264", "rtsp://10.0.0.5/h264"),
        ("rtsp://viewer@cam.local/live", "rtsp://viewer@cam.local/live"),
        ("rtsp://u:p@[fe80::1]:8554/x", "rtsp://u:***@[fe80::1]:8554/x"),
        (None, None),
    ],
)
def test_camera_passwords_are_not_answered(url: str | None, shown: str | None) -> None:
    assert redact_url(url) == shown


# --- the middleware, without a database ------------------------------------------------------


class _NoPool:
    """A pool that must not be reached: requests without a usable token stop before it."""

    def connection(self) -> Any:
        raise AssertionError("the database was asked about a request without a token")


@pytest.fixture
async def client() -> Any:
    context = ApiContext(_NoPool(), load_settings(environ={}), lambda: {"components": {}})  # type: ignore[arg-type]
    async with TestClient(TestServer(make_app(context))) as test_client:
        yield test_client


async def test_health_needs_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token gw_0123456789ab_x"],
)
async def test_api_routes_without_a_bearer_token_answer_401(
    client: TestClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/events", "/api/v1/events/GE1", "/api/v1/openapi.json"):
        response = await client.get(path, headers=headers)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="gridwatch"')
        body = await response.json()
        assert body["error"] == "unauthorized" and body["reason"]
    response = await client.post("/api/v1/events/GE1/actions", json={"action": "accept"})
    assert response.status == 401


async def test_unknown_routes_are_left_to_the_router(client: TestClient) -> None:
    assert (await client.get("/api/v1/nothing-here")).status == 404


def test_every_api_route_is_in_the_openapi_document_and_nothing_else() -> None:
    context = ApiContext(_NoPool(), load_settings(environ={}), dict)  # type: ignore[arg-type]
    app = make_app(context)
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"  # aiohttp answers HEAD for every GET by itself
    }
    doc = document(app)
    described = {
        (path, method)
        for path, operations in doc["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert routes == described
    for path, operations in doc["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert "401" in operation["responses"], (method, path)
            assert len(operation["operationId"]) > 0
    _check_refs(doc, doc)


def _check_refs(node: Any, doc: dict[str, Any]) -> None:
    """Every ``$ref`` in the document points at something that exists."""
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str):
            found: Any = doc
            for part in target.removeprefix("#/").split("/"):
                assert part in found, f"dangling $ref {target}"
                found = found[part]
        for value in node.values():
            _check_refs(value, doc)
    elif isinstance(node, list):
        for value in node:
            _check_refs(value, doc)


async def test_require_gives_the_principal_and_refuses_a_viewer_a_write() -> None:
    request = make_mocked_request("GET", "/metrics")
    reader = principal(COUNTY, Role.VIEWER)
    request[PRINCIPAL] = reader
    assert principal_of(request) is reader
    assert await require(request) is reader
    with pytest.raises(web.HTTPForbidden) as refused:
        await require(request, write=True)
    assert refused.value.text is not None and "read_only" in refused.value.text
    actor = principal(TOWN, Role.TOWN_CENTRE)
    request[PRINCIPAL] = actor
    assert await require(request, write=True) is actor

    bare = make_mocked_request("GET", "/metrics")
    with pytest.raises(web.HTTPUnauthorized):
        principal_of(bare)
