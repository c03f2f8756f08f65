"""Tokens in PostgreSQL: ``gridwatch tokens create|list|revoke`` as a user runs them, the
first admin token of a fresh instance, and what authentication accepts."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from gridwatch.cli.tokens_cmd import app
from storage import tokens

pytestmark = pytest.mark.integration

COUNTY, TOWN = "440999", "440999001"


@pytest.fixture(scope="module")
def db(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO grids (code, name, level, parent, ancestors) VALUES"
            " (%s, '示范县', 'county', NULL, '{}'), (%s, '城关镇', 'town', %s, %s)",
            (COUNTY, TOWN, COUNTY, [COUNTY]),
        )
    return database


def run(db: str, *args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, list(args), env={"GRIDWATCH_DB_URL": db})
    error = "" if done.exception is None else str(done.exception)
    return done.exit_code, done.stdout, done.stderr + error


async def authenticate(db: str, text: str) -> tokens.TokenRecord | None:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        found = await tokens.authenticate(conn, text)
        await conn.commit()
        return found


def test_create_prints_the_token_once_and_list_never_shows_it(db: str) -> None:
    code, out, err = run(
        db, "create", "--role", "town_centre", "--scope", TOWN, "--name", "镇街中心",
        "--member", "t1",
    )  # fmt: skip
    assert code == 0, err
    text = out.strip()
    token_id = tokens.parse_token(text)
    assert token_id is not None and out == text + "\n"
    assert token_id in err and "shown once" in err and text not in err

    record = asyncio.run(authenticate(db, text))
    assert record is not None
    assert (record.role.value, record.scope, record.member_id) == ("town_centre", TOWN, "t1")

    code, out, _ = run(db, "list", "--json")
    assert code == 0
    listed = {row["id"]: row for row in map(orjson.loads, out.splitlines())}
    assert listed[token_id]["name"] == "镇街中心"
    assert listed[token_id]["last_used_at"] is not None  # authenticated above
    code, table, _ = run(db, "list")
    assert code == 0 and token_id in table
    assert text.split("_", 2)[2] not in out + table

    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT hash FROM api_tokens WHERE id = %s", (token_id,)).fetchone()
        assert stored is not None and bytes(stored[0]) == tokens.token_hash(text)
        dumped = str(conn.execute("SELECT * FROM api_tokens").fetchall())
        assert text.split("_", 2)[2] not in dumped
        audit = conn.execute(
            "SELECT actor, action, outcome FROM audit_log WHERE target = %s", (token_id,)
        ).fetchall()
    assert audit == [("cli", "token.create", "ok")]


def test_revoke_stops_the_token_at_once(db: str) -> None:
    code, out, err = run(db, "create", "--role", "viewer", "--scope", COUNTY, "--name", "大屏")
    assert code == 0, err
    text = out.strip()
    token_id = tokens.parse_token(text)
    assert token_id is not None
    assert asyncio.run(authenticate(db, text)) is not None

    code, out, err = run(db, "revoke", token_id)
    assert code == 0, err
    assert "revoked" in out
    assert asyncio.run(authenticate(db, text)) is None
    code, out, _ = run(db, "revoke", token_id)
    assert code == 0 and "already revoked" in out

    code, out, _ = run(db, "list", "--json")
    assert token_id not in out  # revoked tokens only with --all
    code, out, _ = run(db, "list", "--json", "--all")
    assert orjson.loads(next(line for line in out.splitlines() if token_id in line))["revoked_at"]
    with psycopg.connect(db) as conn:
        actions = conn.execute(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (token_id,)
        ).fetchall()
    assert actions == [("token.create",), ("token.revoke",)]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--role", "town_centre", "--scope", "440999404"], "no grid '440999404'"),
        (["--role", "town_centre", "--scope", "*"], "only an admin"),
        (["--role", "superuser", "--scope", TOWN], "unknown role"),
        (["--role", "grid_member", "--scope", TOWN, "--member", "system"], "member id"),
    ],
)
def test_create_refuses_what_would_be_a_useless_or_dangerous_token(
    db: str, args: list[str], problem: str
) -> None:
    code, out, err = run(db, "create", *args, "--name", "x")
    assert code != 0 and out == ""
    assert problem in err


def test_revoke_names_an_unknown_or_malformed_id(db: str) -> None:
    code, _, err = run(db, "revoke", "0123456789ab")
    assert code != 0 and "no token 0123456789ab" in err
    code, _, err = run(db, "revoke", "not-an-id")
    assert code != 0 and "not a token id" in err


async def test_first_start_makes_an_admin_token_once(db: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "gridwatch"
    async with await psycopg.AsyncConnection.connect(db) as conn:
        text = await tokens.ensure_admin_token(conn, data_dir)
        assert text is not None
        path = data_dir / tokens.ADMIN_TOKEN_FILE
        assert path.read_text() == text + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        record = await tokens.authenticate(conn, text)
        assert record is not None and (record.role.value, record.scope) == ("admin", "*")

        assert await tokens.ensure_admin_token(conn, data_dir) is None  # a second start
        assert path.read_text() == text + "\n"

        # every admin token revoked: the next start lets the operator back in
        await tokens.revoke_token(conn, record.id)
        await conn.commit()
        again = await tokens.ensure_admin_token(conn, data_dir)
        assert again is not None and again != text
        assert path.read_text() == again + "\n"
        cur = await conn.execute("SELECT count(*) FROM api_tokens WHERE role = 'admin'")
        assert await cur.fetchone() == (2,)


async def test_workers_starting_together_make_one_admin_token(
    database: str, tmp_path: Path
) -> None:
    # a fresh database of its own: the module's already has an admin
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE role = 'admin'")
        await conn.commit()

    async def start(n: int) -> str | None:
        async with await psycopg.AsyncConnection.connect(database) as conn:
            return await tokens.ensure_admin_token(conn, tmp_path / f"w{n}")

    made = await asyncio.gather(*(start(n) for n in range(4)))
    assert sum(t is not None for t in made) == 1
