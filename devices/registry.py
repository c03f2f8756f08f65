"""Typed values of the registry: the grid tree, the devices in it, and import findings.

The importers (``devices.grids``, ``devices.device_import``), the store
(``devices.registry_store``) and the ingest path all exchange these, so they live apart from
any parser or SQL. They are frozen so that a value handed to another room cannot change
under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from shapely.geometry import MultiPolygon, Polygon

from devices.overrides import ProfileOverrides
from devices.profiles import DeviceProfile, get_profile


class GridLevel(StrEnum):
    """A level of the tree as the field has it: 县区 → 镇街 → 村居 → 基础网格."""

    COUNTY = "county"
    TOWN = "town"
    VILLAGE = "village"
    GRID = "grid"


class MemberRole(StrEnum):
    """Who a grid member is; escalation goes up this ladder."""

    GRID_MEMBER = "grid_member"
    VILLAGE_LEAD = "village_lead"
    TOWN_CENTRE = "town_centre"
    CITY_DEPARTMENT = "city_department"


@dataclass(frozen=True, slots=True)
class Member:
    """A person responsible for a grid; ``phone`` is kept as text (leading zeros matter)."""

    id: str
    name: str
    role: MemberRole
    phone: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role.value, "phone": self.phone}


GridGeometry: TypeAlias = Polygon | MultiPolygon


@dataclass(frozen=True, slots=True)
class Grid:
    """One node of the grid tree.

    ``ancestors`` runs from the county down to the parent, so that "the subtree of X" is a
    membership test rather than a recursive walk, and an event topic can be built from it.
    """

    code: str
    name: str
    level: GridLevel
    parent: str | None
    members: tuple[Member, ...] = ()
    geometry: GridGeometry | None = None
    ancestors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FramePolygon:
    """A zone or mask on a camera picture, in 0–1 coordinates so it survives a resolution change."""

    points: tuple[tuple[float, float], ...]

    def to_json(self) -> list[list[float]]:
        return [[x, y] for x, y in self.points]


@dataclass(frozen=True, slots=True)
class Device:
    """A registry entry as stored: where the device is, which grid owns it, how it is read."""

    device_id: str
    type: str
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    site: str = ""
    grid_code: str | None = None
    grid_code_derived: bool = False
    profile: ProfileOverrides = field(default_factory=ProfileOverrides)
    rtsp_url: str | None = None
    zones: tuple[FramePolygon, ...] = ()
    masks: tuple[FramePolygon, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """What the ingest path keeps in memory per device: just enough to accept a message."""

    device_id: str
    type: str
    site: str
    grid_code: str | None
    profile: ProfileOverrides

    def resolved_profile(self) -> DeviceProfile:
        """The type's profile with this device's overrides applied.

        Raises ``UnknownDeviceType`` when the type was unregistered after import.
        """
        return self.profile.apply(get_profile(self.type))


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """One finding of an import, precise enough to fix the file without guessing.

    Grids are located by ``feature`` (index in ``features``), device rows by ``line``
    (1-based, as an editor shows it); an issue about the whole file has neither.
    """

    file: str
    severity: Severity
    reason: str
    line: int | None = None
    feature: int | None = None
    key: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.feature is not None:
            where += f": features[{self.feature}]"
        about = f" ({self.key})" if self.key else ""
        return f"{where}: {self.severity.value}{about}: {self.reason}"
