"""Who may use the broker, made from the registry: one account per device, one for gridwatch,
and the ACL that keeps each device to its own topics.

**Accounts.** A device's MQTT user name is its device id; its password is random
(`secrets.token_urlsafe(24)`, 192 bits), shown once when it is issued and kept only as
mosquitto's own hash, the ``$7$`` PBKDF2-SHA512 form that ``mosquitto_passwd`` writes
(mosquitto 2.0: 12-byte salt, 64-byte digest, base64, 101 iterations by default). Storing
exactly that text in ``broker_accounts`` means the password file can be written again at
any time, on any machine, without knowing a password. As with API tokens, a random
192-bit secret needs no slow hash to resist guessing, and a cheap hash keeps a reconnect
storm of a whole county cheap for the broker.

**ACL.** A device may publish only its own four uplink topics
(``{root}/up/{device_id}/telemetry|event|heartbeat|status``, via mosquitto's ``%u``
pattern), and read nothing: another device's prefix, an overlong topic or a made-up kind
is refused by the broker before gridwatch sees it. gridwatch's own account reads and
writes the uplinks (writing is for ``gridwatch deadletter replay``), publishes the event
feed and its status, may publish downlinks, and reads and writes provisional alerts (its
workers relay them to each other while the database is away).

Ids that cannot be a mosquitto user name (a ``:`` is the password file's separator, and
the device id grammar allows it) are skipped and named, never silently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg

__all__ = [
    "PBKDF2_ITERATIONS",
    "Account",
    "SyncResult",
    "hash_password",
    "new_password",
    "render_acl",
    "render_password_file",
    "sync_accounts",
    "unusable_username",
    "verify_password",
]

#: mosquitto_passwd's default for ``$7$`` (mosquitto 2.0); see the module docstring.
PBKDF2_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
PASSWORD_BYTES: Final = 24
UPLINK_KINDS: Final = ("telemetry", "event", "heartbeat", "status")
# Serialises two `broker config` runs: each sees the other's accounts, none is issued twice.
_SYNC_LOCK: Final = 0x676B6272  # "gkbr"

Kind = Literal["device", "service"]


class BrokerAccessError(RuntimeError):
    """Broker access cannot be set up as asked; the message says what to do."""


# --- passwords (pure) ------------------------------------------------------------------------


def new_password() -> str:
    """A fresh random password (URL-safe text, so it survives any device's config format)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """mosquitto's ``$7$<iterations>$<salt>$<digest>`` hash of ``password``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as mosquitto would decide)."""
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def unusable_username(name: str) -> str | None:
    """Why ``name`` cannot be a broker user name, or None when it can."""
    if not name:
        return "empty"
    if ":" in name:
        return "contains ':' (the password file's separator)"
    if any(c in name for c in "+#/") or any(ord(c) < 0x20 for c in name):
        return "contains a topic wildcard, '/' or a control character"
    if len(name.encode()) > 65535:
        return "longer than MQTT allows"
    return None


# --- files (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """One broker account as stored: never a password, only its hash."""

    username: str
    kind: Kind
    password_hash: str

    def __repr__(self) -> str:
        return f"Account({self.username!r}, {self.kind!r})"


def render_password_file(accounts: Iterable[Account]) -> str:
    """mosquitto's ``password_file``: ``user:hash`` lines, sorted so reruns diff cleanly."""
    lines = [f"{a.username}:{a.password_hash}" for a in sorted(accounts, key=lambda a: a.username)]
    return "".join(f"{line}\n" for line in lines)


def render_acl(topic_root: str, service_username: str) -> str:
    """mosquitto's ``acl_file`` for gridwatch (see the module docstring)."""
    root = topic_root.rstrip("/")
    for text in (root, service_username):
        if "\n" in text or "%" in text:
            raise BrokerAccessError(f"{text!r} cannot go in an ACL file")
    lines = [
        "# Generated by `gridwatch broker config` from the registry: edits are lost.",
        "",
        "# gridwatch itself: reads every uplink (and writes them for `deadletter replay`),",
        "# publishes the event feed, its own status and downlinks, and relays provisional",
        "# alerts between its workers during a database outage.",
        f"user {service_username}",
        f"topic readwrite {root}/up/#",
        f"topic write {root}/events/#",
        f"topic readwrite {root}/provisional/#",
        f"topic readwrite {root}/service/#",
        f"topic write {root}/down/#",
        "",
        "# Every device (user name = device id): its own uplink topics, nothing else.",
        *(f"pattern write {root}/up/%u/{kind}" for kind in UPLINK_KINDS),
    ]
    return "\n".join(lines) + "\n"


# --- accounts in the database ----------------------------------------------------------------


@dataclass(slots=True)
class SyncResult:
    """What :func:`sync_accounts` did. ``issued`` holds the only copy of new passwords."""

    accounts: list[Account] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict, repr=False)
    rotated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return sum(1 for a in self.accounts if a.kind == "device")

    def summary(self) -> dict[str, Any]:
        """Counts and names, never a password: safe for logs and the audit log."""
        return {
            "devices": self.devices,
            "issued": sorted(self.issued),
            "rotated": self.rotated,
            "removed": self.removed,
            "skipped": self.skipped,
        }


async def sync_accounts(
    conn: psycopg.AsyncConnection[Any],
    *,
    service_username: str,
    rotate: Sequence[str] = (),
) -> SyncResult:
    """Bring ``broker_accounts`` in line with the registry, in one transaction.

    Every registered device gets an account if it has none; accounts of devices no longer
    registered are removed; those named in ``rotate`` (or the service account) get a new
    password. Raises :class:`BrokerAccessError` for a ``rotate`` name that has no account.
    """
    if (why := unusable_username(service_username)) is not None:
        raise BrokerAccessError(f"service user name {service_username!r}: {why}")
    result = SyncResult()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SYNC_LOCK,))
        cur = await conn.execute("SELECT device_id FROM devices ORDER BY device_id")
        device_ids = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute("SELECT username, kind FROM broker_accounts")
        existing: dict[str, str] = {row[0]: row[1] for row in await cur.fetchall()}

        wanted: dict[str, Kind] = {service_username: "service"}
        for device_id in device_ids:
            why = unusable_username(device_id)
            if device_id == service_username:
                why = "is gridwatch's own broker user name"
            if why is not None:
                result.skipped[device_id] = why
            else:
                wanted[device_id] = "device"
        unknown = sorted(set(rotate) - set(wanted))
        if unknown:
            raise BrokerAccessError(
                "no broker account to rotate for: " + ", ".join(unknown)
                + " (not a registered device nor the service account)"
            )

        gone = sorted(u for u, kind in existing.items() if u not in wanted)
        if gone:
            await conn.execute("DELETE FROM broker_accounts WHERE username = ANY(%s)", (gone,))
            result.removed = gone
        for username, kind in wanted.items():
            if username in existing and existing[username] == kind and username not in rotate:
                continue
            password = new_password()
            await conn.execute(
                "INSERT INTO broker_accounts (username, kind, password_hash) VALUES (%s, %s, %s)"
                " ON CONFLICT (username) DO UPDATE SET kind = EXCLUDED.kind,"
                " password_hash = EXCLUDED.password_hash, rotated_at = now()",
                (username, kind, hash_password(password)),
            )
            result.issued[username] = password
            if username in existing:
                result.rotated.append(username)
        cur = await conn.execute(
            "SELECT username, kind, password_hash FROM broker_accounts ORDER BY username"
        )
        result.accounts = [Account(u, k, h) for u, k, h in await cur.fetchall()]
    return result
