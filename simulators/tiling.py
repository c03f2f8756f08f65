"""A jittered rectangular tiling: basic-grid polygons that share their borders exactly.

Cells are quadrilaterals over one lattice of jittered corners, with a jittered point on
every edge, so neighbours share every vertex of their common border: no overlaps, no
slivers, and the polygons stay simple (jitter is far below half a cell).

Nested blocks place the tree on the lattice: a village's grids are a block of cells, a
town's villages a block of village blocks, the county a block of towns. Each block is as
near square as its count allows, so a village or town is one contiguous area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random

from shapely.geometry import Polygon

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0
_DECIMALS = 7  # ~1 cm; every cell reads the same rounded shared vertex


@dataclass(frozen=True, slots=True)
class Block:
    """How ``count`` children are laid out: ``cols × rows`` slots, filled row by row."""

    cols: int
    rows: int

    @classmethod
    def for_count(cls, count: int) -> Block:
        """The factor pair nearest a square (no empty slot) unless it is a thin strip;
        then the nearest square, leaving a few slots empty."""
        best = cls(count, 1)
        for rows in range(1, math.isqrt(count) + 1):
            if count % rows == 0:
                best = cls(count // rows, rows)
        if best.cols <= 3 * best.rows:
            return best
        cols = math.ceil(math.sqrt(count))
        return cls(cols, math.ceil(count / cols))

    def slot(self, index: int) -> tuple[int, int]:
        return index % self.cols, index // self.cols


@dataclass(frozen=True, slots=True)
class Layout:
    """Where basic grid ``(town, village, grid)`` sits on the lattice, as (col, row)."""

    towns: Block
    villages: Block
    grids: Block

    @classmethod
    def for_tree(cls, towns: int, villages_per_town: int, grids_per_village: int) -> Layout:
        return cls(
            Block.for_count(towns),
            Block.for_count(villages_per_town),
            Block.for_count(grids_per_village),
        )

    @property
    def cols(self) -> int:
        return self.towns.cols * self.villages.cols * self.grids.cols

    @property
    def rows(self) -> int:
        return self.towns.rows * self.villages.rows * self.grids.rows

    def cell(self, town: int, village: int, grid: int) -> tuple[int, int]:
        tx, ty = self.towns.slot(town)
        vx, vy = self.villages.slot(village)
        gx, gy = self.grids.slot(grid)
        col = (tx * self.villages.cols + vx) * self.grids.cols + gx
        row = (ty * self.villages.rows + vy) * self.grids.rows + gy
        return col, row


class JitteredLattice:
    """Cell polygons of a ``cols × rows`` lattice centred on ``(lon, lat)``.

    ``cell_m`` is the nominal cell size in metres; corners move up to ``jitter`` of a cell
    in each axis and edge midpoints up to half that across their edge.
    """

    def __init__(
        self,
        cols: int,
        rows: int,
        *,
        centre: tuple[float, float],
        cell_m: float,
        rng: Random,
        jitter: float = 0.15,
    ) -> None:
        if not 0.0 <= jitter < 0.25:
            raise ValueError(f"jitter must be in [0, 0.25), got {jitter}")
        lon, lat = centre
        self.dlon = cell_m / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat)))
        self.dlat = cell_m / _M_PER_DEG_LAT
        x0 = lon - cols * self.dlon / 2
        y0 = lat - rows * self.dlat / 2

        def corner(i: int, j: int) -> tuple[float, float]:
            return (
                x0 + (i + rng.uniform(-jitter, jitter)) * self.dlon,
                y0 + (j + rng.uniform(-jitter, jitter)) * self.dlat,
            )

        self._corners = [[corner(i, j) for j in range(rows + 1)] for i in range(cols + 1)]
        across = jitter / 2
        # Midpoint of the bottom edge of cell (i, j), moved up or down.
        self._bottom = [
            [self._mid(i, j, i + 1, j, 0.0, rng.uniform(-across, across)) for j in range(rows + 1)]
            for i in range(cols)
        ]
        # Midpoint of the left edge of cell (i, j), moved left or right.
        self._left = [
            [self._mid(i, j, i, j + 1, rng.uniform(-across, across), 0.0) for j in range(rows)]
            for i in range(cols + 1)
        ]
        self.cols = cols
        self.rows = rows

    def _mid(
        self, i1: int, j1: int, i2: int, j2: int, shift_x: float, shift_y: float
    ) -> tuple[float, float]:
        (ax, ay), (bx, by) = self._corners[i1][j1], self._corners[i2][j2]
        return (ax + bx) / 2 + shift_x * self.dlon, (ay + by) / 2 + shift_y * self.dlat

    def cell(self, col: int, row: int) -> Polygon:
        """Cell ``(col, row)`` (col eastwards, row northwards), counter-clockwise."""
        c, b, le = self._corners, self._bottom, self._left
        ring = [
            c[col][row],
            b[col][row],
            c[col + 1][row],
            le[col + 1][row],
            c[col + 1][row + 1],
            b[col][row + 1],
            c[col][row + 1],
            le[col][row],
        ]
        return Polygon([(round(x, _DECIMALS), round(y, _DECIMALS)) for x, y in ring])


def metres_to_degrees(metres: float, lat: float) -> tuple[float, float]:
    """(dlon, dlat) spanning ``metres`` at latitude ``lat``."""
    return (
        metres / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))),
        metres / _M_PER_DEG_LAT,
    )
