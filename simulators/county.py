"""A fictional county, generated from a seed: the grid tree, its members, sites and devices.

The county is shaped like the field: county → towns (街道/镇) → villages (社区/村) → basic
grids (第N网格), with statistical-division-style codes, one grid worker per basic grid and
a lead, a centre or a department at each level above. Devices come in the proportions of
the district in docs/domain.md (2,861 smoke : 2,113 electrical-fire : 430 fire-water per
1,089 grids) and sit in sites — buildings and places with several devices each — so that
alarms of one place can be correlated. ``--towns 11 --villages 11 --grids 9`` gives that
district's 1,089 grids and exactly its device counts.

The result is made of the registry's own values (:class:`devices.registry.Grid`,
:class:`devices.registry.Device`); ``simulators.county_files`` writes them in the contract's
file formats.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from random import Random

import shapely
from shapely.geometry import Polygon

from devices.registry import Device, Grid, GridLevel, Member, MemberRole
from devices.resources import Resource
from simulators import county_field, names
from simulators.scenes import DEMO_ZONE, OSD_MASK
from simulators.tiling import JitteredLattice, Layout, metres_to_degrees

_COUNTY_CODE = re.compile(r"[0-9]{6}")
_COORD_DECIMALS = 6  # ~0.1 m
_SITE_MARGIN_M = 30.0  # a site keeps this far inside its grid's border
_DEVICE_SPREAD_M = 10.0  # devices of a site lie within this of the site's point
_DEVICE_MARGIN_M = 5.0


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A device type the generator places by the grid, at a rate per basic grid."""

    type_key: str
    prefix: str  # of device ids: SD-440999001001-03-0007
    label: str  # in device names
    per_grid: float


# The district in docs/domain.md: 2,861 smoke, 2,113 electrical-fire, 430 fire-water in 1,089.
DEVICE_KINDS: tuple[DeviceKind, ...] = (
    DeviceKind("smoke_detector", "SD", "独立式烟感", 2861 / 1089),
    DeviceKind("electrical_fire_monitor", "EF", "电气火灾监测", 2113 / 1089),
    DeviceKind("water_pressure_sensor", "WP", "消防水压监测", 430 / 1089),
)
CAMERA = DeviceKind("camera", "CAM", "视频监控", 0.0)
# Placed at the sites after every other device (simulators.county_field): 4,064 in 1,089 grids.
PATROL_TAG = DeviceKind(
    county_field.TAG_TYPE, county_field.TAG_PREFIX, county_field.TAG_LABEL,
    county_field.TAGS_PER_GRID,
)  # fmt: skip


class CountySpecError(ValueError):
    """A parameter of the county cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class CountySpec:
    """What to generate. The same spec (seed included) always gives the same county."""

    code: str = "440999"
    name: str = "珠湾区"
    towns: int = 6
    villages_per_town: int = 6
    grids_per_village: int = 5
    streets: int | None = None  # towns that are 街道 (the rest are 镇); None: a third
    density: float = 1.0  # devices per grid, relative to the district's proportions
    cameras: int = 6
    seed: int = 2026
    centre: tuple[float, float] = (113.3, 22.9)  # lon, lat
    cell_m: float = 450.0  # nominal basic grid size; jitter makes them ~300–600 m across

    def __post_init__(self) -> None:
        if not _COUNTY_CODE.fullmatch(self.code):
            raise CountySpecError(f"code must be 6 digits (e.g. 440999), got {self.code!r}")
        for key, low, high in (
            ("towns", 1, 99),
            ("villages_per_town", 1, 99),
            ("grids_per_village", 1, 99),
        ):
            value = getattr(self, key)
            if not low <= value <= high:
                raise CountySpecError(f"{key} must be {low}–{high}, got {value}")
        if self.streets is not None and not 0 <= self.streets <= self.towns:
            raise CountySpecError(f"streets must be 0–{self.towns}, got {self.streets}")
        if not 0.0 <= self.density <= 100.0:
            raise CountySpecError(f"density must be 0–100, got {self.density}")
        if self.cameras < 0:
            raise CountySpecError(f"cameras must be 0 or more, got {self.cameras}")
        if not 100.0 <= self.cell_m <= 5000.0:
            raise CountySpecError(f"cell_m must be 100–5000 m, got {self.cell_m}")

    @property
    def street_count(self) -> int:
        return self.streets if self.streets is not None else max(1, self.towns // 3)

    @property
    def grid_count(self) -> int:
        return self.towns * self.villages_per_town * self.grids_per_village


@dataclass(frozen=True, slots=True)
class County:
    """The generated county: the grid tree (parents before children) and its devices."""

    spec: CountySpec
    grids: tuple[Grid, ...]
    devices: tuple[Device, ...]
    resources: tuple[Resource, ...] = ()  # micro fire stations, hydrants, duty teams

    def at_level(self, level: GridLevel) -> tuple[Grid, ...]:
        return tuple(g for g in self.grids if g.level is level)

    def counts(self) -> dict[str, int]:
        """Numbers worth printing: grids per level, members, sites, devices per type."""
        levels = Counter(g.level.value for g in self.grids)
        types = Counter(d.type for d in self.devices)
        return {
            "towns": levels[GridLevel.TOWN.value],
            "villages": levels[GridLevel.VILLAGE.value],
            "grids": levels[GridLevel.GRID.value],
            "members": sum(len(g.members) for g in self.grids),
            "sites": len({d.site for d in self.devices}),
            "devices": len(self.devices),
            **{kind.type_key: types[kind.type_key] for kind in (*DEVICE_KINDS, CAMERA)},
            PATROL_TAG.type_key: types[PATROL_TAG.type_key],
            **Counter(r.kind.value for r in self.resources),
        }


def generate_county(spec: CountySpec | None = None) -> County:
    spec = spec or CountySpec()
    rng = Random(spec.seed)
    pool = names.NamePool(rng)
    layout = Layout.for_tree(spec.towns, spec.villages_per_town, spec.grids_per_village)
    lattice = JitteredLattice(
        layout.cols, layout.rows, centre=spec.centre, cell_m=spec.cell_m, rng=rng
    )
    tree = _Tree()
    tree.add(
        Grid(
            spec.code, spec.name, GridLevel.COUNTY, None,
            (
                Member(f"cc-{spec.code}", f"{spec.name}综治中心", MemberRole.CITY_DEPARTMENT,
                       names.mobile(rng)),
                Member(f"fire-{spec.code}", f"{spec.name}消防救援大队",
                       MemberRole.CITY_DEPARTMENT, names.mobile(rng)),
            ),
        )
    )
    for t in range(spec.towns):
        street = t < spec.street_count
        # Statistical codes: 001–099 for 街道, 100–199 for 镇.
        number = t + 1 if street else 100 + t - spec.street_count + 1
        town_code = f"{spec.code}{number:03d}"
        town_name = pool.place() + ("街道" if street else "镇")
        tree.add(
            Grid(
                town_code, town_name, GridLevel.TOWN, spec.code,
                (Member(f"tc-{town_code}", f"{town_name}综治中心", MemberRole.TOWN_CENTRE,
                        names.mobile(rng)),),
            )
        )
        for v in range(spec.villages_per_town):
            # 001–199 for 社区 (居委会), 200–399 for 村 (村委会); a town's seat is a 社区.
            community = street or v == 0
            village_code = f"{town_code}{(v + 1) if community else 200 + v:03d}"
            village_name = pool.place() + ("社区" if community else "村")
            tree.add(
                Grid(
                    village_code, village_name, GridLevel.VILLAGE, town_code,
                    (Member(f"vl-{village_code}", names.person(rng), MemberRole.VILLAGE_LEAD,
                            names.mobile(rng)),),
                )
            )
            for g in range(spec.grids_per_village):
                grid_code = f"{village_code}-{g + 1:02d}"
                tree.add(
                    Grid(
                        grid_code, f"{village_name}第{g + 1}网格", GridLevel.GRID, village_code,
                        (Member(f"gm-{grid_code}", names.person(rng), MemberRole.GRID_MEMBER,
                                names.mobile(rng)),),
                        lattice.cell(*layout.cell(t, v, g)),
                    )
                )
                tree.address_of[grid_code] = f"{spec.name}{town_name}{village_name}"
    devices = _Placer(spec, rng, tree).place()
    # patrol tags and resources draw from their own random streams: the devices above stay
    # what they were for a seed
    devices += county_field.patrol_tags(tree.grids, devices, seed=spec.seed, density=spec.density)
    resources = county_field.resources(tree.grids, devices, seed=spec.seed)
    return County(spec, tuple(tree.grids), tuple(devices), tuple(resources))


@dataclass
class _Tree:
    grids: list[Grid] = field(default_factory=list)
    address_of: dict[str, str] = field(default_factory=dict)  # basic grid → address prefix
    _by_code: dict[str, Grid] = field(default_factory=dict)

    def add(self, grid: Grid) -> None:
        """Append ``grid`` (its parent already added) with its ancestors filled in."""
        if grid.parent is not None:
            parent = self._by_code[grid.parent]
            grid = replace(grid, ancestors=(*parent.ancestors, parent.code))
        self.grids.append(grid)
        self._by_code[grid.code] = grid


@dataclass(frozen=True, slots=True)
class _Site:
    key: str
    label: str
    address: str
    lon: float
    lat: float


class _Placer:
    """Sites and devices, grid by grid, with exact totals per type across the county."""

    def __init__(self, spec: CountySpec, rng: Random, tree: _Tree) -> None:
        self.spec = spec
        self.rng = rng
        self.tree = tree
        self.basic = [g for g in tree.grids if g.level is GridLevel.GRID]
        lat = spec.centre[1]
        self.site_margin = max(metres_to_degrees(_SITE_MARGIN_M, lat))
        self.device_margin = max(metres_to_degrees(_DEVICE_MARGIN_M, lat))
        self.spread = metres_to_degrees(_DEVICE_SPREAD_M, lat)

    def place(self) -> list[Device]:
        per_grid = self._counts()
        devices: list[Device] = []
        sites_of: list[list[_Site]] = []
        for grid, counts in zip(self.basic, per_grid, strict=True):
            grid_devices, sites = self._grid_devices(grid, counts)
            devices.extend(grid_devices)
            sites_of.append(sites)
        devices.extend(self._cameras(sites_of))
        return devices

    def _counts(self) -> list[Counter[str]]:
        """Per grid, how many of each type: the county total is the district's rate × grids
        (rounded), spread evenly with the remainder on randomly chosen grids."""
        n = len(self.basic)
        counts: list[Counter[str]] = [Counter() for _ in range(n)]
        for kind in DEVICE_KINDS:
            total = round(n * kind.per_grid * self.spec.density)
            each, extra = divmod(total, n)
            lucky = set(self.rng.sample(range(n), extra))
            for i in range(n):
                counts[i][kind.type_key] = each + (1 if i in lucky else 0)
        return counts

    def _grid_devices(self, grid: Grid, counts: Counter[str]) -> tuple[list[Device], list[_Site]]:
        kinds = [k for k in DEVICE_KINDS for _ in range(counts[k.type_key])]
        if not kinds:
            return [], []
        self.rng.shuffle(kinds)
        polygon = _polygon(grid)
        sites = [self._site(grid, polygon, n + 1) for n in range(max(1, len(kinds) // 3))]
        numbers: Counter[str] = Counter()
        at_site: Counter[tuple[str, str]] = Counter()
        devices = []
        for i, kind in enumerate(kinds):
            site = sites[i % len(sites)]
            numbers[kind.type_key] += 1
            at_site[site.key, kind.type_key] += 1
            lon, lat = self._near(polygon, site)
            devices.append(Device(
                device_id=f"{kind.prefix}-{grid.code}-{numbers[kind.type_key]:04d}",
                type=kind.type_key,
                name=f"{site.label}{kind.label}{at_site[site.key, kind.type_key]}号",
                lat=lat, lon=lon, address=site.address, site=site.key, grid_code=grid.code,
            ))
        return devices, sites

    def _cameras(self, sites_of: list[list[_Site]]) -> list[Device]:
        chosen = sorted(self.rng.sample(range(len(self.basic)), min(self.spec.cameras,
                                                                     len(self.basic))))
        cameras = []
        for n, index in enumerate(chosen, start=1):
            grid = self.basic[index]
            polygon = _polygon(grid)
            sites = sites_of[index]
            site = self.rng.choice(sites) if sites else self._site(grid, polygon, 99)
            lon, lat = self._near(polygon, site)
            cameras.append(Device(
                device_id=f"{CAMERA.prefix}-{grid.code}-0001",
                type=CAMERA.type_key,
                name=f"{site.label}{CAMERA.label}",
                lat=lat, lon=lon, address=site.address, site=site.key, grid_code=grid.code,
                rtsp_url=f"rtsp://127.0.0.1:8554/cam-{n:03d}",
                # the simulated cameras' scenes (simulators.scenes.demo) watch this zone
                zones=(DEMO_ZONE,), masks=(OSD_MASK,),
            ))
        return cameras

    def _site(self, grid: Grid, polygon: Polygon, number: int) -> _Site:
        rng = self.rng
        kind = names.site_kind(rng)
        if kind == "住宅楼":
            label = f"{rng.randint(1, 30)}栋"
        elif kind == "出租屋":
            label = "出租屋"
        else:
            label = names.place(rng) + kind
        street = names.road(rng)
        address = f"{self.tree.address_of[grid.code]}{street}{rng.randint(1, 300)}号{label}"
        inner = polygon.buffer(-self.site_margin)
        lon, lat = _random_point(inner if not inner.is_empty else polygon, rng)
        return _Site(f"{grid.code}-S{number:02d}", label, address, lon, lat)

    def _near(self, polygon: Polygon, site: _Site) -> tuple[float, float]:
        """A point within ~10 m of the site, well inside the grid (the site's own if the
        draws keep falling outside)."""
        inner = polygon.buffer(-self.device_margin)
        dlon, dlat = self.spread
        for _ in range(20):
            lon = round(site.lon + self.rng.uniform(-dlon, dlon), _COORD_DECIMALS)
            lat = round(site.lat + self.rng.uniform(-dlat, dlat), _COORD_DECIMALS)
            if shapely.contains_xy(inner, lon, lat):
                return lon, lat
        return site.lon, site.lat


def _polygon(grid: Grid) -> Polygon:
    if not isinstance(grid.geometry, Polygon):  # pragma: no cover - the tiling makes polygons
        raise TypeError(f"grid {grid.code} has no polygon")
    return grid.geometry


def _random_point(area: Polygon, rng: Random) -> tuple[float, float]:
    """A uniformly random point inside ``area``, rounded to ~0.1 m (rejection sampling: the
    cells are near rectangles, so few draws are wasted)."""
    min_x, min_y, max_x, max_y = area.bounds
    while True:
        lon = round(rng.uniform(min_x, max_x), _COORD_DECIMALS)
        lat = round(rng.uniform(min_y, max_y), _COORD_DECIMALS)
        if shapely.contains_xy(area, lon, lat):
            return lon, lat


def expected_total(kind: DeviceKind, grids: int, density: float = 1.0) -> int:
    """How many devices of ``kind`` a county of ``grids`` basic grids gets."""
    return round(grids * kind.per_grid * density) if kind.per_grid else 0


__all__ = [
    "CAMERA",
    "DEVICE_KINDS",
    "PATROL_TAG",
    "County",
    "CountySpec",
    "CountySpecError",
    "DeviceKind",
    "expected_total",
    "generate_county",
]
