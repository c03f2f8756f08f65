"""The registry as ingest sees it: an in-memory map from device id to profile and codec.

Loaded at start and swapped whole on a registry change (NOTIFY from an import, or the
periodic refresh), so the hot path reads a plain dict and never waits on the database.
"""

from __future__ import annotations

import logging

import psycopg

from devices.codecs import UnknownCodec, get_codec
from devices.profiles import UnknownDeviceType, get_profile
from ingest.validate import KnownDevice

log = logging.getLogger(__name__)

REGISTRY_CHANNEL = "gridwatch_registry"


async def load_known_devices(conn: psycopg.AsyncConnection) -> dict[str, KnownDevice]:
    cur = await conn.execute("SELECT device_id, type, profile FROM devices")
    known: dict[str, KnownDevice] = {}
    for device_id, type_key, overrides in await cur.fetchall():
        try:
            profile = get_profile(type_key).with_overrides(overrides)
            known[device_id] = KnownDevice(device_id, profile, get_codec(profile.codec))
        except (UnknownDeviceType, UnknownCodec) as exc:
            log.error("device not loaded: %s", exc, extra={"device_id": device_id})
    return known
