"""Grid file import: the tree, the codes, the geometry, and how problems are reported."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from devices.grid_codes import code_ancestors, level_of_code, parent_code
from devices.grids import GridImport, load_grids, parse_grids
from devices.registry import GridLevel, MemberRole, Severity
from devices.registry_rows import grid_from_row, grid_row
from tests.unit.registry_data import (
    COUNTY,
    GRIDS,
    TOWN,
    VILLAGE,
    collection,
    feature,
    grid_square,
    jsonish,
    member,
    sample_features,
    square,
)


def parse(features: list[dict[str, Any]], **kwargs: Any) -> GridImport:
    return parse_grids(collection(features), source="grids.geojson", **kwargs)


def reasons(result: GridImport) -> dict[int | None, str]:
    return {issue.feature: issue.reason for issue in result.errors}


def test_sample_tree_is_accepted_with_ancestors_members_and_geometry() -> None:
    result = parse(sample_features())

    assert result.issues == ()
    by_code = {g.code: g for g in result.grids}
    assert list(by_code) == [COUNTY, TOWN, VILLAGE, *GRIDS]
    assert by_code[COUNTY].ancestors == ()
    assert by_code[VILLAGE].ancestors == (COUNTY, TOWN)
    basic = by_code[GRIDS[2]]
    assert basic.level is GridLevel.GRID
    assert basic.parent == VILLAGE
    assert basic.ancestors == (COUNTY, TOWN, VILLAGE)
    assert isinstance(basic.geometry, Polygon)
    assert basic.geometry.bounds == pytest.approx((113.32, 22.50, 113.33, 22.51))
    assert basic.members[0].role is MemberRole.GRID_MEMBER
    assert basic.members[0].phone == "13800000012"
    assert by_code[TOWN].geometry is None


def test_load_grids_reads_a_file_and_names_it_in_issues(tmp_path: Any) -> None:
    features = sample_features()
    features[5]["properties"]["level"] = "street"
    path = tmp_path / "县区网格.geojson"
    path.write_bytes(collection(features))

    result = load_grids(path)

    assert len(result.grids) == 5
    (issue,) = result.errors
    assert issue.file == str(path)
    assert issue.feature == 5
    assert issue.key == GRIDS[2]
    assert "level must be one of county|town|village|grid" in issue.reason
    assert str(issue).startswith(f"{path}: features[5]: error ({GRIDS[2]}):")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": {}}', "no features list"),
        (b"[]", "not a GeoJSON FeatureCollection"),
    ],
)
def test_an_unreadable_file_is_one_file_level_error(document: bytes, reason: str) -> None:
    result = parse_grids(document, source="x.geojson")

    assert result.grids == ()
    (issue,) = result.issues
    assert issue.feature is None and issue.severity is Severity.ERROR
    assert reason in issue.reason


@pytest.mark.parametrize(
    ("index", "changes", "reason"),
    [
        (0, {"code": "44098"}, "does not fit level county"),
        (1, {"code": "4409810011"}, "does not fit level town"),
        (1, {"code": "440982001"}, "does not extend its parent's code 440981"),
        (2, {"code": "440981002005"}, "does not extend its parent's code 440981001"),
        (3, {"code": "440981001005-3"}, "does not fit level grid"),
        (3, {"code": "440981001006-01"}, "does not extend its parent's code 440981001005"),
        (3, {"code": "４40981001005-01"}, "does not fit level grid"),
        (3, {"name": ""}, "name must be a non-empty string"),
        (3, {"level": "street"}, "level must be one of"),
        (3, {"parent": 440981001005}, "parent must be a grid code or null"),
        (3, {"parent": "440981001009"}, "neither in this file nor already registered"),
        (0, {"parent": "440900"}, "a county is the top of the tree"),
        (1, {"parent": None}, "a town needs a parent county"),
        (3, {"members": {"id": "m"}}, "members must be a list"),
        (3, {"members": [member(role="boss")]}, "members[0].role must be one of"),
        (3, {"members": [{**member(), "phone": 13800000000}]}, "phone must be text"),
        (3, {"members": [member(n=1), member(n=1)]}, "listed twice"),
        (3, {"members": [{"name": "x", "role": "grid_member"}]}, "members[0]: id must be"),
    ],
)
def test_a_bad_feature_is_reported_and_the_others_kept(
    index: int, changes: dict[str, Any], reason: str
) -> None:
    features = sample_features()
    features[index]["properties"].update(changes)

    result = parse(features)

    assert index in reasons(result)
    assert reason in reasons(result)[index]
    kept = {g.code for g in result.grids}
    untouched = {f["properties"]["code"] for n, f in enumerate(sample_features()) if n != index}
    if index == 3:  # a basic grid has no children: everything else stays
        assert kept == untouched


def test_level_must_follow_the_parents_level() -> None:
    features = [*sample_features()[:3], feature("440981001006", "village", COUNTY)]

    result = parse(features)

    assert "a village's parent must be a town; 440981 is county" in reasons(result)[3]


def test_children_of_a_rejected_feature_are_rejected_and_say_why() -> None:
    features = sample_features()
    features[2]["properties"]["members"] = [member(role="mayor")]

    result = parse(features, existing={VILLAGE})  # an older version is registered

    assert {g.code for g in result.grids} == {COUNTY, TOWN}
    for index in (3, 4, 5):
        assert reasons(result)[index] == f"parent {VILLAGE} was rejected"


def test_a_parent_already_registered_is_found_with_its_ancestors() -> None:
    result = parse(
        [feature("440981001005-07", "grid", VILLAGE, square(113.4, 22.5))],
        existing={COUNTY, TOWN, VILLAGE},
    )

    (grid,) = result.grids
    assert result.issues == ()
    assert grid.ancestors == (COUNTY, TOWN, VILLAGE)


def test_a_parent_cycle_rejects_every_feature_on_it() -> None:
    features = [
        feature(COUNTY, "county", None),
        feature("440981001", "town", "440981002"),
        feature("440981002", "town", "440981001"),
        feature("440981001005", "village", "440981001"),
    ]

    result = parse(features)

    assert [g.code for g in result.grids] == [COUNTY]
    assert reasons(result)[1].startswith("parent cycle: ")
    assert reasons(result)[2].startswith("parent cycle: ")
    assert reasons(result)[3] == "parent 440981001 was rejected"


def test_a_duplicate_code_rejects_the_later_feature() -> None:
    features = [*sample_features(), feature(GRIDS[0], "grid", VILLAGE, grid_square(0))]

    result = parse(features)

    assert reasons(result) == {6: "duplicate code, first in features[3]"}
    assert len(result.grids) == 6


BOW_TIE = {
    "type": "Polygon",
    "coordinates": [
        [[113.3, 22.5], [113.31, 22.51], [113.31, 22.5], [113.3, 22.51], [113.3, 22.5]]
    ],
}


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        (None, "a basic grid needs a Polygon or MultiPolygon geometry"),
        ({"type": "Point", "coordinates": [113.3, 22.5]}, "got 'Point'"),
        (BOW_TIE, "geometry is not valid: Self-intersection"),
        (
            {"type": "Polygon", "coordinates": [[[113.3, 22.5], [113.31, 22.5], [113.3, 22.5]]]},
            "geometry is not valid: Too few points",
        ),
        ({"type": "Polygon", "coordinates": "x"}, "geometry cannot be read"),
        ({"type": "Polygon", "coordinates": []}, "geometry is empty"),
        (square(22.5, 113.3), "out of lon/lat range"),
        ("POLYGON((0 0, 1 0, 1 1, 0 0))", "must be a GeoJSON Polygon or MultiPolygon object"),
    ],
)
def test_a_basic_grid_needs_a_valid_polygon(geometry: Any, reason: str) -> None:
    features = sample_features()
    features[4]["geometry"] = geometry

    result = parse(features)

    assert reason in reasons(result)[4]
    assert GRIDS[1] not in {g.code for g in result.grids}


def test_multipolygon_grids_are_accepted() -> None:
    features = sample_features()
    features[4]["geometry"] = {
        "type": "MultiPolygon",
        "coordinates": [grid_square(1)["coordinates"], square(113.5, 22.5)["coordinates"]],
    }

    assert parse(features).issues == ()


def test_a_bad_geometry_above_basic_grids_is_dropped_with_a_warning() -> None:
    features = sample_features()
    features[2]["geometry"] = BOW_TIE

    result = parse(features)

    assert len(result.grids) == 6
    (warning,) = result.warnings
    assert warning.feature == 2 and "geometry dropped" in warning.reason
    assert next(g for g in result.grids if g.code == VILLAGE).geometry is None


def test_overlapping_basic_grids_are_warned_with_the_overlap_ratio() -> None:
    features = sample_features()
    features[5]["geometry"] = square(113.315, 22.50)  # half of it lies in grid -02

    result = parse(features)

    assert len(result.grids) == 6
    (warning,) = result.warnings
    assert warning.feature == 5 and warning.key == GRIDS[2]
    assert f"overlaps {GRIDS[1]} (features[4])" in warning.reason
    assert "50.00% of this grid, 50.00% of that one" in warning.reason


def test_grids_that_only_touch_do_not_overlap() -> None:
    assert parse(sample_features()).warnings == ()


def test_grid_codes_tell_level_parent_and_ancestors() -> None:
    assert level_of_code("440981001005-03") is GridLevel.GRID
    assert level_of_code("4409810010") is None
    assert parent_code("440981001005-03") == VILLAGE
    assert parent_code(COUNTY) is None
    assert code_ancestors("440981001005-03") == (COUNTY, TOWN, VILLAGE)


def test_a_grid_survives_the_trip_through_a_table_row() -> None:
    for grid in parse(sample_features()).grids:
        row = [getattr(v, "obj", v) for v in grid_row(grid)]  # unwrap Jsonb as psycopg would
        row = orjson.loads(orjson.dumps(row))  # jsonb comes back as plain JSON
        assert grid_from_row(row) == grid


JSONISH = jsonish()
GEOMETRY = JSONISH | st.fixed_dictionaries(
    {
        "type": JSONISH | st.sampled_from(["Polygon", "MultiPolygon", "Point"]),
        "coordinates": JSONISH,
    }
)
PROPERTY = st.sampled_from(["code", "name", "level", "parent", "members"])


@settings(database=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 5), key=PROPERTY, value=JSONISH, geometry=GEOMETRY)
def test_any_damage_to_a_feature_is_reported_never_raised(
    index: int, key: str, value: Any, geometry: Any
) -> None:
    features = sample_features()
    features[index]["properties"][key] = value
    features[(index + 1) % 6]["geometry"] = geometry

    result = parse(features)

    assert all(issue.feature is not None for issue in result.issues)
    assert len(result.grids) + len(result.errors) <= 6
