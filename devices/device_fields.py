"""Checks of single device fields, shared by the CSV and JSON-lines readers.

CSV gives every value as text and JSON lines gives typed values; each check accepts both,
so a row means the same whichever format it came in. A failed check raises
:class:`FieldError` with a reason meant for the person fixing the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from devices.registry import FramePolygon

# Used in MQTT topics (`gridwatch/v1/up/{device_id}/…`): no `/`, `+`, `#`, no spaces.
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RTSP_SCHEMES = frozenset({"rtsp", "rtsps"})


class FieldError(ValueError):
    """A field cannot be accepted; the message names the field and says why."""


def present(row: Mapping[str, object], key: str) -> object:
    """The value, or None when the field is missing, null or blank (an empty CSV cell)."""
    value = row.get(key)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def text(row: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = present(row, key)
    if value is None:
        if required:
            raise FieldError(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise FieldError(f"{key} must be text, got {value!r}")
    return value.strip()


def device_id(row: Mapping[str, object]) -> str:
    value = text(row, "device_id", required=True)
    if not DEVICE_ID.fullmatch(value):
        raise FieldError(
            f"device_id {value!r} must be 1–64 of A-Z a-z 0-9 _ . : - "
            "(it is part of MQTT topics, so no / + # or spaces)"
        )
    return value


def number(row: Mapping[str, object], key: str) -> float | None:
    value = present(row, key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise FieldError(f"{key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise FieldError(f"{key} must be a number, got {value!r}") from None
    else:
        raise FieldError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(result):
        raise FieldError(f"{key} must be finite, got {value!r}")
    return result


def position(row: Mapping[str, object]) -> tuple[float | None, float | None]:
    """(lat, lon), both or neither; a range error hints at swapped columns."""
    lat, lon = number(row, "lat"), number(row, "lon")
    if (lat is None) != (lon is None):
        raise FieldError("lat and lon must be given together")
    if lat is not None and lon is not None:
        if not -90.0 <= lat <= 90.0:
            swapped = " (lat and lon swapped?)" if -90.0 <= lon <= 90.0 else ""
            raise FieldError(f"lat {lat} is outside -90..90{swapped}")
        if not -180.0 <= lon <= 180.0:
            raise FieldError(f"lon {lon} is outside -180..180")
    return lat, lon


def json_value(row: Mapping[str, object], key: str) -> object:
    """A structured field: as is from JSON lines, parsed from its JSON text in CSV."""
    value = present(row, key)
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise FieldError(f"{key} is not valid JSON: {exc}") from None
    return value


def rtsp_url(row: Mapping[str, object]) -> str:
    value = text(row, "rtsp_url")
    if not value:
        raise FieldError("a camera needs an rtsp_url")
    if any(ch.isspace() for ch in value):
        raise FieldError("rtsp_url must not contain spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise FieldError(f"rtsp_url cannot be read: {exc}") from None
    if parts.scheme.lower() not in RTSP_SCHEMES:
        raise FieldError(f"rtsp_url must start with rtsp:// or rtsps://, got {value!r}")
    if not host:
        raise FieldError("rtsp_url has no host")
    return value


def frame_polygons(row: Mapping[str, object], key: str) -> tuple[FramePolygon, ...]:
    """Zones or masks: a list of polygons, each a list of [x, y] with 0 ≤ x, y ≤ 1."""
    raw = json_value(row, key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FieldError(f"{key} must be a list of polygons ([[x, y], …] in 0–1 coordinates)")
    return tuple(_frame_polygon(f"{key}[{n}]", item) for n, item in enumerate(raw))


def _frame_polygon(where: str, raw: object) -> FramePolygon:
    if not isinstance(raw, list):
        raise FieldError(f"{where} must be a list of [x, y] points")
    points: list[tuple[float, float]] = []
    for m, point in enumerate(raw):
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in point)
        ):
            raise FieldError(f"{where}[{m}] must be [x, y] numbers, got {point!r}")
        x, y = float(point[0]), float(point[1])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise FieldError(f"{where}[{m}] = {point!r} is outside the 0–1 frame")
        points.append((x, y))
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()  # a closed ring written GeoJSON-style
    if len(set(points)) < 3:
        raise FieldError(f"{where} needs at least 3 distinct points")
    shape = Polygon(points)
    if not shape.is_valid:  # collinear points land here too (a zero-width "self-intersection")
        raise FieldError(f"{where} is not a valid polygon: {explain_validity(shape)}")
    return FramePolygon(tuple(points))
