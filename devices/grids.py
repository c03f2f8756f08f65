"""Read a GeoJSON FeatureCollection of grids and check it as a tree.

A grid file is prepared by hand in a GIS by someone at the county centre; one bad feature
must not block the other two thousand, so every feature is judged on its own, reported with
its index and reason, and the good ones are kept. A feature whose parent was rejected is
rejected too (its ancestors would be wrong), and says so.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from devices.grid_codes import shape_problem as code_shape_problem
from devices.grid_geometry import GeometryProblem, find_overlaps, parse_geometry
from devices.grid_tree import Candidate, Known, Report, check_tree
from devices.registry import (
    Grid,
    GridGeometry,
    GridLevel,
    ImportIssue,
    Member,
    MemberRole,
    Severity,
)


@dataclass(frozen=True, slots=True)
class GridImport:
    """What a grid file gave: the grids to store and everything worth telling the operator."""

    grids: tuple[Grid, ...]
    issues: tuple[ImportIssue, ...]

    @property
    def errors(self) -> tuple[ImportIssue, ...]:
        return tuple(i for i in self.issues if i.is_error)

    @property
    def warnings(self) -> tuple[ImportIssue, ...]:
        return tuple(i for i in self.issues if not i.is_error)


class _Bad(ValueError):
    """A feature cannot be accepted; the message is the reason shown to the operator."""


def load_grids(
    path: Path, *, existing: Collection[str] = (), overlap_min_ratio: float = 1e-6
) -> GridImport:
    return parse_grids(
        path.read_bytes(),
        source=str(path),
        existing=existing,
        overlap_min_ratio=overlap_min_ratio,
    )


def parse_grids(
    data: bytes | str,
    *,
    source: str,
    existing: Collection[str] = (),
    overlap_min_ratio: float = 1e-6,
) -> GridImport:
    """Check a grid file; ``existing`` are codes already registered that parents may name.

    Codes in ``existing`` are trusted to be well formed: their level and ancestors are read
    off the code (see ``devices.grid_codes``).
    """
    issues: list[ImportIssue] = []

    def report(index: int | None, reason: str, key: str | None, severity: Severity) -> None:
        issues.append(ImportIssue(source, severity, reason, feature=index, key=key))

    features = _features_of(data, report)
    candidates, rejected = _read_features(features, report)
    known = Known(candidates, frozenset(existing), frozenset(rejected - candidates.keys()))
    ancestry = check_tree(known, report)
    accepted = [
        Candidate(f.index, replace(f.grid, ancestors=ancestors))
        for code, f in candidates.items()
        if (ancestors := ancestry[code]) is not None
    ]
    _warn_overlaps(accepted, overlap_min_ratio, report)
    issues.sort(key=lambda i: (-1 if i.feature is None else i.feature, i.severity.value))
    return GridImport(tuple(f.grid for f in accepted), tuple(issues))


def _features_of(data: bytes | str, report: Report) -> list[object]:
    """The features list, or nothing (with one file-level error) when there is none."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        report(None, f"not JSON: {exc}", None, Severity.ERROR)
        return []
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        report(None, "not a GeoJSON FeatureCollection", None, Severity.ERROR)
        return []
    features = document.get("features")
    if not isinstance(features, list):
        report(None, "FeatureCollection has no features list", None, Severity.ERROR)
        return []
    return features


def _read_features(features: list[object], report: Report) -> tuple[dict[str, Candidate], set[str]]:
    """Features that pass their own checks, by code; and the codes of those that did not."""
    candidates: dict[str, Candidate] = {}
    rejected: set[str] = set()
    for index, raw in enumerate(features):
        try:
            grid, dropped = _read_feature(raw)
        except _Bad as bad:
            code = _code_of(raw)
            report(index, str(bad), code, Severity.ERROR)
            if code is not None:
                rejected.add(code)
            continue
        if dropped is not None:
            report(index, dropped, grid.code, Severity.WARNING)
        if grid.code in candidates:
            first = candidates[grid.code].index
            report(index, f"duplicate code, first in features[{first}]", grid.code, Severity.ERROR)
            continue
        candidates[grid.code] = Candidate(index, grid)
    return candidates, rejected


def _warn_overlaps(accepted: list[Candidate], min_ratio: float, report: Report) -> None:
    """Overlaps are warnings: the grids are kept, GridLocator settles points in both."""
    basic = [f for f in accepted if f.grid.level is GridLevel.GRID]
    drawn = [(f, f.grid.geometry) for f in basic if f.grid.geometry is not None]
    for overlap in find_overlaps([geometry for _, geometry in drawn], min_ratio):
        this, other = drawn[overlap.second][0], drawn[overlap.first][0]
        report(
            this.index,
            f"overlaps {other.grid.code} (features[{other.index}]): shared area is "
            f"{overlap.ratio_second:.2%} of this grid, {overlap.ratio_first:.2%} of that one",
            this.grid.code,
            Severity.WARNING,
        )


def _code_of(raw: object) -> str | None:
    if isinstance(raw, dict) and isinstance(props := raw.get("properties"), dict):
        code = props.get("code")
        return code if isinstance(code, str) else None
    return None


def _read_feature(raw: object) -> tuple[Grid, str | None]:
    """The feature's grid (ancestors not yet known) and, for an upper level whose optional
    geometry was unusable, why it was dropped."""
    if not isinstance(raw, dict) or not isinstance(props := raw.get("properties"), dict):
        raise _Bad("feature must be an object with a properties object")
    code = _text(props, "code")
    name = _text(props, "name")
    try:
        level = GridLevel(str(props.get("level")))
    except ValueError:
        levels = "|".join(level.value for level in GridLevel)
        raise _Bad(f"level must be one of {levels}, got {props.get('level')!r}") from None
    if (problem := code_shape_problem(code, level)) is not None:
        raise _Bad(problem)
    parent = props.get("parent")
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise _Bad(f"parent must be a grid code or null, got {parent!r}")
    members = _members(props.get("members"))
    geometry: GridGeometry | None = None
    dropped: str | None = None
    raw_geometry = raw.get("geometry")
    if level is GridLevel.GRID:
        if raw_geometry is None:
            raise _Bad("a basic grid needs a Polygon or MultiPolygon geometry")
        try:
            geometry = parse_geometry(raw_geometry)
        except GeometryProblem as exc:
            raise _Bad(str(exc)) from None
    elif raw_geometry is not None:
        try:
            geometry = parse_geometry(raw_geometry)
        except GeometryProblem as exc:
            dropped = f"geometry dropped (optional above basic grids): {exc}"
    return Grid(code, name, level, parent, members, geometry), dropped


def _text(props: Mapping[str, object], key: str) -> str:
    value = props.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _members(raw: object) -> tuple[Member, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Bad("members must be a list of {id, name, role, phone}")
    members: list[Member] = []
    seen: set[str] = set()
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _Bad(f"members[{n}] must be an object")
        try:
            member_id, name = _text(item, "id"), _text(item, "name")
        except _Bad as exc:
            raise _Bad(f"members[{n}]: {exc}") from None
        try:
            role = MemberRole(str(item.get("role")))
        except ValueError:
            roles = "|".join(r.value for r in MemberRole)
            got = item.get("role")
            raise _Bad(f"members[{n}].role must be one of {roles}, got {got!r}") from None
        phone = item.get("phone", "")
        if not isinstance(phone, str):
            raise _Bad(f"members[{n}].phone must be text (leading zeros matter), got {phone!r}")
        if member_id in seen:
            raise _Bad(f"members[{n}]: member id {member_id!r} listed twice")
        seen.add(member_id)
        members.append(Member(member_id, name, role, phone.strip()))
    return tuple(members)
