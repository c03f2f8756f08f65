"""Builders of small registry files: a county, a town, a village and three basic grids.

The basic grids are real 0.01° squares side by side near lon 113.3, lat 22.5 (about
1 km × 1.1 km, the size of a basic grid in a town), so point-in-polygon answers can be
checked by eye. Tests change one feature or row and look at what the importer says.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

COUNTY = "440981"
TOWN = "440981001"
VILLAGE = "440981001005"
GRIDS = ("440981001005-01", "440981001005-02", "440981001005-03")

WEST, SOUTH, SIZE = 113.30, 22.50, 0.01


def square(west: float, south: float, size: float = SIZE) -> dict[str, Any]:
    """A GeoJSON Polygon, counter-clockwise as RFC 7946 asks."""
    east, north = west + size, south + size
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def grid_square(n: int) -> dict[str, Any]:
    """The square of basic grid ``GRIDS[n]``: the n-th square from the west."""
    return square(round(WEST + n * SIZE, 6), SOUTH)


def centre_of(n: int) -> tuple[float, float]:
    """(lon, lat) in the middle of ``GRIDS[n]``."""
    return round(WEST + (n + 0.5) * SIZE, 6), round(SOUTH + SIZE / 2, 6)


def member(role: str = "grid_member", n: int = 1) -> dict[str, Any]:
    return {"id": f"m{n}", "name": f"网格员{n}", "role": role, "phone": f"1380000{n:04d}"}


def feature(
    code: str,
    level: str,
    parent: str | None,
    geometry: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    members: Sequence[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "code": code,
        "name": name or f"网格 {code}",
        "level": level,
        "parent": parent,
        "members": list(members),
    }
    properties.update(extra)
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def sample_features() -> list[dict[str, Any]]:
    """County → town → village → three basic grids, each with a member."""
    return [
        feature(COUNTY, "county", None, name="信宜市", members=[member("city_department", 1)]),
        feature(TOWN, "town", COUNTY, name="东镇街道", members=[member("town_centre", 2)]),
        feature(VILLAGE, "village", TOWN, name="城东社区", members=[member("village_lead", 3)]),
        *(
            feature(code, "grid", VILLAGE, grid_square(n), members=[member(n=10 + n)])
            for n, code in enumerate(GRIDS)
        ),
    ]


def collection(features: Iterable[Mapping[str, Any]]) -> bytes:
    return orjson.dumps({"type": "FeatureCollection", "features": list(features)})


def device(device_id: str = "SD-001", grid: int = 0, **fields: Any) -> dict[str, Any]:
    """A smoke detector in the middle of ``GRIDS[grid]``; ``fields`` override or add."""
    lon, lat = centre_of(grid)
    row: dict[str, Any] = {
        "device_id": device_id,
        "type": "smoke_detector",
        "name": "3栋2楼走廊",
        "lat": lat,
        "lon": lon,
        "address": "广东省信宜市东镇街道城东社区3栋",
        "site": "城东社区3栋",
    }
    row.update(fields)
    return {k: v for k, v in row.items() if v is not None}


def camera(device_id: str = "CAM-001", grid: int = 1, **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "type": "camera",
        "rtsp_url": "rtsp://admin:secret@10.0.0.5:554/Streaming/Channels/101",
        "zones": [[[0.1, 0.1], [0.6, 0.1], [0.6, 0.7], [0.1, 0.7]]],
    }
    return device(device_id, grid, **{**defaults, **fields})


def jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(orjson.dumps(row).decode() + "\n" for row in rows)


CSV_COLUMNS = (
    "device_id", "type", "name", "lat", "lon", "address", "site", "grid_code", "profile",
    "rtsp_url", "zones", "masks",
)  # fmt: skip


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> str:
    """CSV with a header; structured values (profile, zones) become JSON text cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def jsonish(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any value a JSON parser can give (integers within 64 bits, as orjson writes them)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
