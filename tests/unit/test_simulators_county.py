"""The fictional county: a valid grid tree, valid tiling, devices where they claim to be."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Point

from devices.device_fields import DEVICE_ID
from devices.device_import import ParsedDevice, iter_devices
from devices.geo import GridLocator
from devices.grid_codes import parent_code, shape_problem
from devices.grid_geometry import find_overlaps
from devices.grids import load_grids
from devices.placement import place_devices
from devices.registry import GridLevel, MemberRole
from simulators.county import (
    CAMERA,
    DEVICE_KINDS,
    PATROL_TAG,
    County,
    CountySpec,
    CountySpecError,
    expected_total,
    generate_county,
)
from simulators.county_files import find_county_files, write_county

SMALL = CountySpec(towns=3, villages_per_town=4, grids_per_village=5, cameras=4, seed=7)


@pytest.fixture(scope="module")
def county() -> County:
    return generate_county(SMALL)


def _metres(lon_deg: float, lat_deg: float, lat: float) -> tuple[float, float]:
    return lon_deg * 111_320 * math.cos(math.radians(lat)), lat_deg * 110_574


def test_codes_fit_their_level_and_parent(county: County) -> None:
    by_code = {g.code: g for g in county.grids}
    assert len(by_code) == len(county.grids)
    for grid in county.grids:
        assert shape_problem(grid.code, grid.level) is None, grid.code
        if grid.level is GridLevel.COUNTY:
            assert grid.parent is None and grid.code == SMALL.code
            continue
        assert grid.parent == parent_code(grid.code)
        assert grid.parent is not None
        parent = by_code[grid.parent]
        assert grid.ancestors == (*parent.ancestors, parent.code)
    counts = county.counts()
    assert (counts["towns"], counts["villages"], counts["grids"]) == (3, 12, 60)


def test_codes_and_names_follow_the_statistical_scheme(county: County) -> None:
    for town in county.at_level(GridLevel.TOWN):
        number = int(town.code[6:])
        if town.name.endswith("街道"):
            assert 1 <= number <= 99
        else:
            assert town.name.endswith("镇") and 100 <= number <= 199
    for village in county.at_level(GridLevel.VILLAGE):
        number = int(village.code[9:])
        if village.name.endswith("社区"):
            assert 1 <= number <= 199
        else:
            assert village.name.endswith("村") and 200 <= number <= 399
    for grid in county.at_level(GridLevel.GRID):
        assert re.fullmatch(r".+第[0-9]{1,2}网格", grid.name)
        assert grid.name.endswith(f"第{int(grid.code[-2:])}网格")
    assert len({g.name for g in county.grids if g.level is not GridLevel.GRID}) == 1 + 3 + 12


def test_members_per_level(county: County) -> None:
    expected = {
        GridLevel.COUNTY: MemberRole.CITY_DEPARTMENT,
        GridLevel.TOWN: MemberRole.TOWN_CENTRE,
        GridLevel.VILLAGE: MemberRole.VILLAGE_LEAD,
        GridLevel.GRID: MemberRole.GRID_MEMBER,
    }
    for grid in county.grids:
        assert grid.members, grid.code
        assert {m.role for m in grid.members} == {expected[grid.level]}
        for member in grid.members:
            assert member.name and member.id
            assert re.fullmatch(r"1[0-9]{10}", member.phone)
    assert sum(1 for g in county.at_level(GridLevel.GRID) for _ in g.members) == 60


def test_polygons_valid_non_overlapping_and_grid_sized(county: County) -> None:
    basic = county.at_level(GridLevel.GRID)
    geometries = [g.geometry for g in basic]
    assert all(g is not None for g in geometries)
    shapes = [g for g in geometries if g is not None]
    assert all(s.is_valid and s.geom_type == "Polygon" for s in shapes)
    assert find_overlaps(shapes, min_ratio=0.0) == []
    union = shapely.union_all(shapes)
    assert union.area == pytest.approx(sum(s.area for s in shapes), rel=1e-9)
    lat = SMALL.centre[1]
    for shape in shapes:
        min_x, min_y, max_x, max_y = shape.bounds
        width, height = _metres(max_x - min_x, max_y - min_y, lat)
        assert 300 <= width <= 650 and 300 <= height <= 650, (width, height)
        side = math.sqrt(shape.area * _metres(1, 1, lat)[0] * _metres(1, 1, lat)[1])
        assert 300 <= side <= 600
    centre = union.centroid
    assert abs(centre.x - SMALL.centre[0]) < 0.05 and abs(centre.y - SMALL.centre[1]) < 0.05


def test_villages_and_towns_are_contiguous(county: County) -> None:
    children: dict[str, list[shapely.Geometry]] = defaultdict(list)
    for grid in county.at_level(GridLevel.GRID):
        assert grid.geometry is not None
        for ancestor in grid.ancestors[1:]:
            children[ancestor].append(grid.geometry)
    for code, shapes in children.items():
        assert shapely.union_all(shapes).geom_type == "Polygon", code


def test_devices_inside_their_grid(county: County) -> None:
    polygons = {g.code: g.geometry for g in county.at_level(GridLevel.GRID)}
    locator = GridLocator(
        {code: shape for code, shape in polygons.items() if shape is not None}
    )
    for device in county.devices:
        assert device.lat is not None and device.lon is not None and device.grid_code
        shape = polygons[device.grid_code]
        assert shape is not None and shape.contains(Point(device.lon, device.lat))
        assert locator.locate(device.lon, device.lat) == device.grid_code


def test_device_ids_names_and_proportions(county: County) -> None:
    ids = [d.device_id for d in county.devices]
    assert len(set(ids)) == len(ids)
    prefixes = {k.type_key: k.prefix for k in (*DEVICE_KINDS, CAMERA, PATROL_TAG)}
    for device in county.devices:
        assert DEVICE_ID.fullmatch(device.device_id)
        assert device.device_id.startswith(f"{prefixes[device.type]}-{device.grid_code}-")
        assert device.name and device.address.startswith(SMALL.name)
        if device.type == CAMERA.type_key:
            assert device.rtsp_url is not None
            assert re.fullmatch(r"rtsp://127\.0\.0\.1:8554/cam-[0-9]{3}", device.rtsp_url)
        else:
            assert device.rtsp_url is None
    types = Counter(d.type for d in county.devices)
    for kind in DEVICE_KINDS:
        assert types[kind.type_key] == expected_total(kind, 60)
    assert types[CAMERA.type_key] == 4
    assert types[PATROL_TAG.type_key] == expected_total(PATROL_TAG, 60)


def test_sites_hold_several_devices_of_one_grid(county: County) -> None:
    sites: dict[str, list[str]] = defaultdict(list)
    grid_of: dict[str, set[str]] = defaultdict(set)
    for device in county.devices:
        sites[device.site].append(device.type)
        grid_of[device.site].add(device.grid_code or "")
    assert all(len(codes) == 1 for codes in grid_of.values())
    sizes = [len(types) for types in sites.values()]
    assert sum(sizes) / len(sizes) >= 3
    assert sum(1 for size in sizes if size >= 2) / len(sizes) > 0.9
    mixed = [types for types in sites.values() if len(set(types) - {CAMERA.type_key}) >= 2]
    assert len(mixed) > len(sites) / 2  # smoke and electrical in one place, to correlate


def test_field_scale_gives_the_districts_counts() -> None:
    spec = CountySpec(towns=11, villages_per_town=11, grids_per_village=9, cameras=0)
    counts = generate_county(spec).counts()
    assert counts["grids"] == 1089
    assert counts["smoke_detector"] == 2861
    assert counts["electrical_fire_monitor"] == 2113
    assert counts["water_pressure_sensor"] == 430


def test_density_scales_devices() -> None:
    counts = generate_county(CountySpec(towns=2, villages_per_town=2, grids_per_village=5,
                                        density=0.5)).counts()
    assert counts["smoke_detector"] == round(20 * 2861 / 1089 * 0.5)


def test_same_seed_same_files_other_seed_other_county(tmp_path: Path) -> None:
    first = write_county(generate_county(SMALL), tmp_path / "a", formats=["csv", "jsonl"])
    second = write_county(generate_county(SMALL), tmp_path / "b", formats=["csv", "jsonl"])
    assert first.grids.read_bytes() == second.grids.read_bytes()
    for a, b in zip(first.devices, second.devices, strict=True):
        assert a.read_bytes() == b.read_bytes()
    other = write_county(
        generate_county(CountySpec(towns=3, villages_per_town=4, grids_per_village=5, seed=8)),
        tmp_path / "c",
    )
    assert other.grids.read_bytes() != first.grids.read_bytes()


def test_files_pass_the_registry_import(county: County, tmp_path: Path) -> None:
    files = write_county(county, tmp_path, formats=["csv", "jsonl"])
    assert find_county_files(tmp_path).devices[0].name == "devices.csv"
    imported = load_grids(files.grids)
    assert imported.issues == ()
    assert len(imported.grids) == len(county.grids)
    locator = GridLocator.from_grids(imported.grids)
    basic = {g.code for g in imported.grids if g.level is GridLevel.GRID}
    for path in files.devices:
        rows = list(iter_devices(path))
        parsed = [r for r in rows if isinstance(r, ParsedDevice)]
        assert len(parsed) == len(rows) == len(county.devices), path
        placed = place_devices(parsed, locator, basic, source=str(path))
        assert placed.issues == ()
        assert [d.device_id for d in placed.devices] == [d.device_id for d in county.devices]
        by_id = {d.device_id: d for d in county.devices}
        for device in placed.devices:
            original = by_id[device.device_id]
            assert (device.lat, device.lon, device.site, device.grid_code, device.rtsp_url) == (
                original.lat, original.lon, original.site, original.grid_code, original.rtsp_url
            )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"code": "44099"}, "code"),
        ({"towns": 0}, "towns"),
        ({"grids_per_village": 100}, "grids_per_village"),
        ({"streets": 9}, "streets"),
        ({"density": -1.0}, "density"),
        ({"cameras": -1}, "cameras"),
    ],
)
def test_bad_spec_names_the_parameter(changes: dict[str, object], named: str) -> None:
    with pytest.raises(CountySpecError, match=named):
        CountySpec(**changes)  # type: ignore[arg-type]  # deliberately wrong values
