"""Point-in-polygon over basic grids, and placing parsed devices into them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from devices.device_import import ParsedDevice
from devices.geo import GridLocator
from devices.grids import parse_grids
from devices.placement import place_devices
from devices.registry import Device, Grid, GridLevel, Severity
from tests.unit.registry_data import (
    GRIDS,
    SIZE,
    SOUTH,
    VILLAGE,
    WEST,
    centre_of,
    collection,
    grid_square,
    sample_features,
    square,
)


def sample_grids() -> tuple[Grid, ...]:
    return parse_grids(collection(sample_features()), source="grids.geojson").grids


@pytest.fixture
def locator() -> GridLocator:
    return GridLocator.from_grids(sample_grids())


def test_only_basic_grids_with_geometry_own_points(locator: GridLocator) -> None:
    assert len(locator) == 3


@pytest.mark.parametrize("n", range(3))
def test_a_point_inside_a_grid_is_located(locator: GridLocator, n: int) -> None:
    assert locator.locate(*centre_of(n)) == GRIDS[n]


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(113.0, 22.0), (WEST - 0.001, SOUTH + 0.005), (WEST + 0.005, SOUTH + SIZE + 0.001),
     (math.nan, 22.5), (113.3, math.inf)],
)  # fmt: skip
def test_a_point_outside_every_grid_is_none(locator: GridLocator, lon: float, lat: float) -> None:
    assert locator.locate(lon, lat) is None


def test_a_point_on_a_shared_border_goes_to_the_lower_code_of_equal_grids(
    locator: GridLocator,
) -> None:
    border = (WEST + SIZE, SOUTH + SIZE / 2)  # between -01 and -02
    assert locator.locate(*border) == GRIDS[0]


def test_in_an_overlap_the_smaller_grid_wins_whatever_the_order() -> None:
    big = shape(square(113.30, 22.50, 0.02))
    small = shape(square(113.305, 22.505, 0.005))
    point = (113.307, 22.507)

    forwards = GridLocator({"440981001005-01": big, "440981001005-09": small})
    backwards = GridLocator({"440981001005-09": small, "440981001005-01": big})

    assert forwards.locate(*point) == backwards.locate(*point) == "440981001005-09"
    assert forwards.locate(113.319, 22.519) == "440981001005-01"


def test_an_empty_locator_finds_nothing() -> None:
    empty = GridLocator({})
    assert empty.locate(113.3, 22.5) is None
    assert empty.locate_many([113.3], [22.5]) == [None]


def test_bulk_lookup_needs_as_many_latitudes_as_longitudes(locator: GridLocator) -> None:
    with pytest.raises(ValueError, match="2 longitudes but 1 latitudes"):
        locator.locate_many([113.3, 113.31], [22.5])
    assert locator.locate_many([], []) == []


POINTS = st.lists(
    st.tuples(
        st.floats(WEST - 0.005, WEST + 3.5 * SIZE) | st.just(math.nan),
        st.floats(SOUTH - 0.005, SOUTH + 1.5 * SIZE),
    ),
    max_size=40,
)


@settings(database=None, max_examples=100)
@given(points=POINTS)
def test_bulk_lookup_agrees_with_single_lookups(points: list[tuple[float, float]]) -> None:
    locator = GridLocator.from_grids(sample_grids())
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    assert locator.locate_many(lons, lats) == [locator.locate(x, y) for x, y in points]


def parsed(
    device_id: str,
    line: int,
    *,
    lat: float | None = None,
    lon: float | None = None,
    grid_code: str | None = None,
) -> ParsedDevice:
    device = Device(device_id, "smoke_detector", lat=lat, lon=lon, grid_code=grid_code)
    return ParsedDevice(line, device)


def test_placement_derives_checks_and_reports(locator: GridLocator) -> None:
    lon0, lat0 = centre_of(0)
    lon2, lat2 = centre_of(2)
    rows = [
        parsed("derived", 2, lat=lat2, lon=lon2),
        parsed("given", 3, lat=lat0, lon=lon0, grid_code=GRIDS[0]),
        parsed("given-no-point", 4, grid_code=GRIDS[1]),
        parsed("elsewhere", 5, lat=30.0, lon=120.0),
        parsed("unknown-grid", 6, lat=lat0, lon=lon0, grid_code=f"{VILLAGE}-99"),
        parsed("disagrees", 7, lat=lat2, lon=lon2, grid_code=GRIDS[1]),
    ]

    placed = place_devices(rows, locator, frozenset(GRIDS), source="devices.csv")

    by_id = {d.device_id: d for d in placed.devices}
    assert list(by_id) == ["derived", "given", "given-no-point", "disagrees"]
    assert by_id["derived"].grid_code == GRIDS[2] and by_id["derived"].grid_code_derived
    assert by_id["given"].grid_code == GRIDS[0] and not by_id["given"].grid_code_derived
    assert by_id["disagrees"].grid_code == GRIDS[1]
    found = {(i.line, i.severity): i.reason for i in placed.issues}
    assert "lies in no registered basic grid" in found[(5, Severity.ERROR)]
    assert f"grid_code {VILLAGE}-99 is not a registered grid" in found[(6, Severity.ERROR)]
    assert f"lies in grid {GRIDS[2]}, not in the given grid_code" in found[(7, Severity.WARNING)]
    assert all(i.file == "devices.csv" for i in placed.issues)


def test_grid_levels_above_basic_grids_are_not_located() -> None:
    county = Grid("440981", "信宜市", GridLevel.COUNTY, None, geometry=shape(grid_square(0)))
    assert len(GridLocator.from_grids([county])) == 0
