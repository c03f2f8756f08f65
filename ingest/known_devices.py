"""The registry as ingest sees it: an in-memory map from device id to profile and codec.

Loaded at start and swapped whole on a registry change (NOTIFY from an import, or the
periodic refresh), so the hot path reads a plain dict and never waits on the database.
"""

from __future__ import annotations

import logging

import psycopg

from alerts.correlation import DeviceContext
from devices.codecs import UnknownCodec, get_codec
from devices.profiles import UnknownDeviceType
from devices.registry_store import REGISTRY_CHANNEL, list_devices, list_grids, load_device_index
from ingest.validate import KnownDevice

__all__ = ["REGISTRY_CHANNEL", "load_device_contexts", "load_known_devices"]

log = logging.getLogger(__name__)


async def load_known_devices(conn: psycopg.AsyncConnection) -> dict[str, KnownDevice]:
    known: dict[str, KnownDevice] = {}
    for device_id, entry in (await load_device_index(conn)).items():
        try:
            profile = entry.resolved_profile()
            known[device_id] = KnownDevice(device_id, profile, get_codec(profile.codec))
        except (UnknownDeviceType, UnknownCodec) as exc:
            log.error("device not loaded: %s", exc, extra={"device_id": device_id})
    return known


async def load_device_contexts(conn: psycopg.AsyncConnection) -> dict[str, DeviceContext]:
    """Site, grid, ancestors, location and the grid's people of every device, for events."""
    grids = {g.code: g for g in await list_grids(conn, with_geometry=False)}
    devices = await list_devices(conn, limit=10_000_000)
    return {
        d.device_id: DeviceContext.from_registry(d, grids.get(d.grid_code or ""))
        for d in devices
    }
