"""Write a generated county in the contract's registry formats, and find those files again.

``grids.geojson`` is a FeatureCollection with ``code``, ``name``, ``level``, ``parent`` and
``members`` per feature (geometry on basic grids only: the levels above are the union of
their children); ``devices.csv`` / ``devices.jsonl`` carry one device a row (a patrol tag's
``profile`` gives its ``patrol_interval``); ``resources.csv`` the micro fire stations,
hydrants and duty teams. They are what ``gridwatch grids import``, ``gridwatch devices
import`` and ``gridwatch resources import`` read.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from devices.grid_geometry import to_geojson
from devices.registry import Device, Grid
from devices.resources import Resource
from simulators.county import County

GRIDS_FILE = "grids.geojson"
DEVICES_CSV = "devices.csv"
DEVICES_JSONL = "devices.jsonl"
RESOURCES_CSV = "resources.csv"
DEVICE_COLUMNS = (
    "device_id", "type", "name", "lat", "lon", "address", "site", "grid_code", "rtsp_url",
    "profile",
)  # fmt: skip
RESOURCE_COLUMNS = (
    "resource_id", "kind", "name", "lat", "lon", "address", "grid_code", "contact", "phone",
    "sensor_id", "detail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CountyFiles:
    grids: Path
    devices: tuple[Path, ...]
    resources: Path | None = None


def grid_feature(grid: Grid) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": to_geojson(grid.geometry) if grid.geometry is not None else None,
        "properties": {
            "code": grid.code,
            "name": grid.name,
            "level": grid.level.value,
            "parent": grid.parent,
            "members": [m.to_json() for m in grid.members],
        },
    }


def write_grids(grids: Iterable[Grid], path: Path) -> None:
    collection = {"type": "FeatureCollection", "features": [grid_feature(g) for g in grids]}
    path.write_bytes(orjson.dumps(collection))


def device_row(device: Device) -> dict[str, object]:
    """The contract's fields of a device; empty ones left out."""
    row: dict[str, object] = {
        "device_id": device.device_id,
        "type": device.type,
        "name": device.name,
        "lat": device.lat,
        "lon": device.lon,
        "address": device.address,
        "site": device.site,
        "grid_code": device.grid_code,
        "rtsp_url": device.rtsp_url,
        "profile": _profile(device),
    }
    return {k: v for k, v in row.items() if v not in (None, "")}


def _profile(device: Device) -> str:
    """A device's profile overrides as JSON text (a patrol tag's interval); '' for none."""
    overrides = device.profile.to_json()
    return orjson.dumps(overrides).decode() if overrides else ""


def write_resources_csv(resources: Iterable[Resource], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, RESOURCE_COLUMNS)
        writer.writeheader()
        for r in resources:
            row = r.to_json()
            row["detail"] = orjson.dumps(row["detail"]).decode() if row["detail"] else ""
            writer.writerow({k: v for k, v in row.items() if v is not None})


def write_devices_csv(devices: Iterable[Device], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, DEVICE_COLUMNS)
        writer.writeheader()
        for device in devices:
            writer.writerow(device_row(device))


def write_devices_jsonl(devices: Iterable[Device], path: Path) -> None:
    with path.open("wb") as handle:
        for device in devices:
            handle.write(orjson.dumps(device_row(device)) + b"\n")


_WRITERS = {"csv": (DEVICES_CSV, write_devices_csv), "jsonl": (DEVICES_JSONL, write_devices_jsonl)}
DEVICE_FORMATS = tuple(_WRITERS)


def write_county(
    county: County, out_dir: Path, *, formats: Iterable[str] = ("csv",)
) -> CountyFiles:
    """``grids.geojson`` and the device file(s) under ``out_dir`` (created if needed)."""
    chosen = list(dict.fromkeys(formats))
    unknown = [f for f in chosen if f not in _WRITERS]
    if unknown or not chosen:
        raise ValueError(f"device formats are {', '.join(DEVICE_FORMATS)}, got {chosen}")
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = out_dir / GRIDS_FILE
    write_grids(county.grids, grids)
    written = []
    for fmt in chosen:
        name, writer = _WRITERS[fmt]
        writer(county.devices, out_dir / name)
        written.append(out_dir / name)
    resources = out_dir / RESOURCES_CSV
    write_resources_csv(county.resources, resources)
    return CountyFiles(grids, tuple(written), resources)


def find_county_files(directory: Path) -> CountyFiles:
    """The files :func:`write_county` wrote to ``directory`` (CSV preferred to JSON lines)."""
    grids = directory / GRIDS_FILE
    found = tuple(p for p in (directory / DEVICES_CSV, directory / DEVICES_JSONL) if p.is_file())
    if not found:
        raise FileNotFoundError(f"no {DEVICES_CSV} or {DEVICES_JSONL} in {directory}")
    resources = directory / RESOURCES_CSV
    return CountyFiles(grids, found, resources if resources.is_file() else None)
