"""API access in PostgreSQL: bearer tokens, stored hashed, and the audit log of actions.

**Token text.** ``gw_<id>_<secret>``: ``id`` is 12 lowercase hex characters, public (it is
the row's key, shown by ``gridwatch tokens list`` and safe to log); ``secret`` is
``secrets.token_urlsafe(32)`` (256 random bits, 43 characters). Only the SHA-256 of the
whole text is stored, and the text is shown once, when the token is made.

A fast hash is the right one here: a password needs a slow, salted hash because people pick
guessable ones, but a 256-bit random secret cannot be guessed or looked up in a table, so
bcrypt/argon2 would only add latency to every request. The lookup is by ``id`` and the
digests are compared in constant time.

**Scope.** A grid code (the token sees that grid's subtree) or ``*`` (every grid, and the
events of devices placed in none), which only an admin may hold (``0004_tokens.sql``).

**Audit.** ``audit_log`` is append-only; :func:`append_audit` never receives a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerts.roles import SYSTEM_ID, TOKEN_ROLES, Role

log = logging.getLogger(__name__)

PREFIX: Final = "gw_"
ALL_GRIDS: Final = "*"
ID_HEX_CHARS: Final = 12
SECRET_BYTES: Final = 32
_TOKEN_RE: Final = re.compile(r"gw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_ID_RE: Final = re.compile(r"[0-9a-f]{12}")
ADMIN_TOKEN_FILE: Final = "admin-token"
ADMIN_TOKEN_NAME: Final = "initial admin"
# pg_advisory_xact_lock key: two workers starting together make one admin token, not two.
_ADMIN_LOCK: Final = 0x676B7465  # "gkte"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION_S: Final = 60

Outcome = Literal["ok", "refused"]


class TokenError(ValueError):
    """A token cannot be made as asked (unknown role, scope or grid); says why."""


# --- the token text (pure) ---------------------------------------------------------------


def new_token_text() -> tuple[str, str]:
    """A fresh ``(id, token text)``."""
    token_id = secrets.token_hex(ID_HEX_CHARS // 2)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_token(text: str) -> str | None:
    """The id of a well-formed token text, else None (the secret is not checked here)."""
    match = _TOKEN_RE.fullmatch(text)
    return match.group(1) if match else None


def is_token_id(text: str) -> bool:
    return _ID_RE.fullmatch(text) is not None


def token_hash(text: str) -> bytes:
    """SHA-256 of the whole token text (see the module docstring for why a fast hash)."""
    return hashlib.sha256(text.encode()).digest()


def hash_matches(text: str, stored: bytes) -> bool:
    return hmac.compare_digest(token_hash(text), bytes(stored))


def check_new_token(role: Role | str, scope: str, member_id: str | None) -> Role:
    """The token's role if ``role``, ``scope`` and ``member_id`` make a valid token."""
    try:
        parsed = Role(role)
    except ValueError:
        parsed = None
    if parsed is None or parsed not in TOKEN_ROLES:
        known = ", ".join(sorted(r.value for r in TOKEN_ROLES))
        raise TokenError(f"unknown role {role!r} (one of: {known})")
    if not scope.strip() or scope != scope.strip():
        raise TokenError("the scope must be a grid code (or '*' for an admin)")
    if scope == ALL_GRIDS and parsed is not Role.ADMIN:
        raise TokenError("only an admin token may have scope '*'; give a grid code")
    if member_id is not None and (not member_id.strip() or member_id.strip() == SYSTEM_ID):
        raise TokenError(f"a member id must be a person's id, not {member_id!r}")
    return parsed


# --- tokens in the database --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One ``api_tokens`` row, less its hash."""

    id: str
    name: str
    role: Role
    scope: str
    member_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "scope": self.scope,
            "member_id": self.member_id,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: its record and the text, which exists nowhere else."""

    record: TokenRecord
    text: str

    def __repr__(self) -> str:  # the text must not reach a log through a repr
        return f"IssuedToken(record={self.record!r}, text='{PREFIX}{self.record.id}_…')"


_FIELDS = "id, name, role, scope, member_id, created_at, last_used_at, revoked_at"


def _record(row: tuple[Any, ...]) -> TokenRecord:
    token_id, name, role, scope, member_id, created, used, revoked = row
    return TokenRecord(token_id, name, Role(role), scope, member_id, created, used, revoked)


async def create_token(
    conn: psycopg.AsyncConnection[Any],
    *,
    name: str,
    role: Role | str,
    scope: str,
    member_id: str | None = None,
) -> IssuedToken:
    """Make a token; the scope must be ``*`` (admin) or a grid of the registry.

    Raises :class:`TokenError`. Runs in the caller's transaction (commit to keep it).
    """
    if not name.strip():
        raise TokenError("a token needs a name (who or what holds it)")
    parsed = check_new_token(role, scope, member_id)
    if scope != ALL_GRIDS:
        cur = await conn.execute("SELECT 1 FROM grids WHERE code = %s", (scope,))
        if await cur.fetchone() is None:
            raise TokenError(f"no grid {scope!r} in the registry: import the grids first")
    token_id, text = new_token_text()
    cur = await conn.execute(
        "INSERT INTO api_tokens (id, name, role, scope, member_id, hash)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_FIELDS}",
        (token_id, name.strip(), parsed.value, scope, member_id, token_hash(text)),
    )
    row = await cur.fetchone()
    assert row is not None
    return IssuedToken(_record(row), text)


async def authenticate(conn: psycopg.AsyncConnection[Any], text: str) -> TokenRecord | None:
    """The active token whose text this is, else None; notes when it was last used."""
    token_id = parse_token(text)
    if token_id is None:
        return None
    cur = await conn.execute(
        f"SELECT {_FIELDS}, hash FROM api_tokens WHERE id = %s AND revoked_at IS NULL",
        (token_id,),
    )
    row = await cur.fetchone()
    if row is None or not hash_matches(text, row[-1]):
        return None
    await conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = %s AND (last_used_at IS NULL"
        " OR last_used_at < now() - make_interval(secs => %s))",
        (token_id, LAST_USED_RESOLUTION_S),
    )
    return _record(row[:-1])


async def get_token(conn: psycopg.AsyncConnection[Any], token_id: str) -> TokenRecord | None:
    cur = await conn.execute(f"SELECT {_FIELDS} FROM api_tokens WHERE id = %s", (token_id,))
    row = await cur.fetchone()
    return _record(row) if row else None


async def list_tokens(
    conn: psycopg.AsyncConnection[Any], *, include_revoked: bool = True
) -> list[TokenRecord]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    cur = await conn.execute(f"SELECT {_FIELDS} FROM api_tokens{where} ORDER BY created_at, id")
    return [_record(row) for row in await cur.fetchall()]


async def revoke_token(conn: psycopg.AsyncConnection[Any], token_id: str) -> TokenRecord | None:
    """Revoke a token (from its next request on); returns it, None if there is no such id.
    A token revoked already keeps its first ``revoked_at``."""
    await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (token_id,),
    )
    return await get_token(conn, token_id)


# --- the audit log -----------------------------------------------------------------------


async def append_audit(
    conn: psycopg.AsyncConnection[Any],
    *,
    token_id: str | None,
    actor: str,
    action: str,
    target: str,
    outcome: Outcome,
    status: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One row of ``audit_log``; in the caller's transaction (with the change it records)."""
    await conn.execute(
        "INSERT INTO audit_log (token_id, actor, action, target, outcome, status, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (token_id, actor, action, target, outcome, status, Jsonb(detail or {})),
    )


# --- the first admin ---------------------------------------------------------------------


async def ensure_admin_token(
    pool_or_conn: AsyncConnectionPool | psycopg.AsyncConnection[Any], data_dir: Path
) -> str | None:
    """On first start: make an admin token (scope ``*``), write it to
    ``<data_dir>/admin-token`` (mode 0600) and return its text, for the caller to print.

    Returns None when an active admin token exists already. "First start" means exactly
    that: with no active admin token (all revoked, say), the next start makes a new one,
    which is how an operator who lost every admin token gets back in. Commits, unless the
    given connection is already inside a transaction (then the caller's commit keeps it).
    """
    if isinstance(pool_or_conn, AsyncConnectionPool):
        async with pool_or_conn.connection() as conn:
            return await _ensure_admin_token(conn, data_dir)
    return await _ensure_admin_token(pool_or_conn, data_dir)


async def _ensure_admin_token(conn: psycopg.AsyncConnection[Any], data_dir: Path) -> str | None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADMIN_LOCK,))
        cur = await conn.execute(
            "SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1"
        )
        if await cur.fetchone() is not None:
            return None
        issued = await create_token(conn, name=ADMIN_TOKEN_NAME, role=Role.ADMIN, scope=ALL_GRIDS)
        await append_audit(
            conn,
            token_id=None,
            actor=SYSTEM_ID,
            action="token.create",
            target=issued.record.id,
            outcome="ok",
            detail={"role": "admin", "scope": ALL_GRIDS, "name": ADMIN_TOKEN_NAME},
        )
        # Written before the commit: if the file cannot be written the token is not kept.
        path = await asyncio.to_thread(write_secret_file, data_dir / ADMIN_TOKEN_FILE, issued.text)
    log.info(
        "first admin token created",
        extra={"token_id": issued.record.id, "path": str(path)},
    )
    return issued.text


def write_secret_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
