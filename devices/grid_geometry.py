"""Geometry checks of a grid file: readable, valid polygons on the globe, and overlaps.

A basic grid's polygon decides which grid (and so which grid worker) an alarm goes to, so a
self-intersecting ring or swapped lat/lon must be caught at import, not at 3 a.m. when the
point-in-polygon test quietly answers "no grid".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import shapely
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Polygon
from shapely.validation import explain_validity

from devices.registry import GridGeometry

_POLYGONAL = frozenset({"Polygon", "MultiPolygon"})


class GeometryProblem(ValueError):
    """A feature's geometry cannot serve as a grid area; the message says why."""


def parse_geometry(raw: object) -> GridGeometry:
    """A GeoJSON geometry object → a valid 2-D (Multi)Polygon in lon/lat, or GeometryProblem."""
    if not isinstance(raw, dict):
        raise GeometryProblem("geometry must be a GeoJSON Polygon or MultiPolygon object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _POLYGONAL:
        raise GeometryProblem(f"geometry must be a Polygon or MultiPolygon, got {kind!r}")
    try:
        geometry = shapely.from_geojson(orjson.dumps(raw))
    except (GEOSException, ValueError, TypeError) as exc:
        raise GeometryProblem(f"geometry cannot be read: {exc}") from None
    geometry = shapely.force_2d(geometry)
    if not isinstance(geometry, Polygon | MultiPolygon):  # pragma: no cover - GEOS kept the type
        raise GeometryProblem(f"geometry must be a Polygon or MultiPolygon, got {kind!r}")
    if geometry.is_empty:
        raise GeometryProblem("geometry is empty")
    if not geometry.is_valid:
        raise GeometryProblem(f"geometry is not valid: {explain_validity(geometry)}")
    min_x, min_y, max_x, max_y = geometry.bounds
    if min_x < -180 or max_x > 180 or min_y < -90 or max_y > 90:
        raise GeometryProblem(
            f"coordinates out of lon/lat range (bounds {geometry.bounds}); "
            "GeoJSON positions are [lon, lat]"
        )
    if geometry.area == 0:
        raise GeometryProblem("geometry has no area")
    return geometry


def to_geojson(geometry: GridGeometry) -> dict[str, object]:
    """The GeoJSON object stored in ``grids.geometry``, with lists (not tuples) for jsonb."""
    loaded: dict[str, object] = orjson.loads(shapely.to_geojson(geometry))
    return loaded


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two basic grids that share area; ratios say how much of each the overlap is."""

    first: int
    second: int
    ratio_first: float
    ratio_second: float


def find_overlaps(geometries: Sequence[GridGeometry], min_ratio: float = 1e-6) -> list[Overlap]:
    """Pairs (by position, ``first < second``) whose shared area exceeds ``min_ratio`` of the
    smaller grid; touching edges share no area and are not reported.

    ``min_ratio`` keeps digitising noise along shared borders out of the report.
    """
    if len(geometries) < 2:
        return []
    shapes = np.asarray(geometries, dtype=object)
    tree = shapely.STRtree(shapes)
    left, right = tree.query(shapes, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if left.size == 0:
        return []
    shared = shapely.area(shapely.intersection(shapes[left], shapes[right]))
    area_left = shapely.area(shapes[left])
    area_right = shapely.area(shapes[right])
    overlaps: list[Overlap] = []
    for i, j, common, a, b in zip(
        left.tolist(),
        right.tolist(),
        shared.tolist(),
        area_left.tolist(),
        area_right.tolist(),
        strict=True,
    ):
        if common / min(a, b) > min_ratio:
            overlaps.append(Overlap(i, j, common / a, common / b))
    return sorted(overlaps, key=lambda o: (o.second, o.first))
