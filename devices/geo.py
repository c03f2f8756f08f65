"""Which basic grid a point lies in: the owner of a device that was registered without one.

Grid files are drawn by hand, so neighbouring grids sometimes overlap a little. A point in
an overlap must land in the same grid on every import, or a re-import would move devices
between grid workers; the smallest grid wins (it is the more specific drawing), then the
lower code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import shapely

from devices.registry import Grid, GridGeometry, GridLevel


class GridLocator:
    """Point-in-polygon over the basic grids, indexed with an STRtree.

    Points on a shared border belong to both grids (``intersects``, not ``within``), so no
    point between two grids is lost; the tie is broken like any overlap.
    """

    __slots__ = ("_codes", "_shapes", "_tree")

    def __init__(self, areas: Mapping[str, GridGeometry]) -> None:
        ordered = sorted(areas.items(), key=lambda item: (item[1].area, item[0]))
        self._codes: list[str] = [code for code, _ in ordered]
        self._shapes = np.asarray([shape for _, shape in ordered], dtype=object)
        # Tree position == priority: the lowest matching position is the winner.
        self._tree = shapely.STRtree(self._shapes)

    @classmethod
    def from_grids(cls, grids: Iterable[Grid]) -> GridLocator:
        """Only basic grids with a geometry own points; upper levels are their union."""
        return cls(
            {
                g.code: g.geometry
                for g in grids
                if g.level is GridLevel.GRID and g.geometry is not None
            }
        )

    def __len__(self) -> int:
        return len(self._codes)

    def locate(self, lon: float, lat: float) -> str | None:
        """The grid code owning (lon, lat), or None outside every grid or for a non-finite point."""
        if not (math.isfinite(lon) and math.isfinite(lat)) or not self._codes:
            return None
        hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
        if hits.size == 0:
            return None
        return self._codes[int(hits.min())]

    def locate_many(self, lons: Sequence[float], lats: Sequence[float]) -> list[str | None]:
        """:meth:`locate` for many points in one tree query; same order as the input."""
        if len(lons) != len(lats):
            raise ValueError(f"{len(lons)} longitudes but {len(lats)} latitudes")
        count = len(lons)
        if count == 0 or not self._codes:
            return [None] * count
        x = np.asarray(lons, dtype=float)
        y = np.asarray(lats, dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        # Non-finite points become empty points, which intersect nothing.
        points = shapely.points(np.where(finite, x, 0.0), np.where(finite, y, 0.0))
        points[~finite] = shapely.Point()
        point_idx, shape_idx = self._tree.query(points, predicate="intersects")
        best = np.full(count, len(self._codes), dtype=np.int64)
        np.minimum.at(best, point_idx, shape_idx)
        return [self._codes[i] if i < len(self._codes) else None for i in best.tolist()]
