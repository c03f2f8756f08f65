"""The grid worker's side of a generated county: patrol tags at its sites, and its response
resources (micro fire stations, hydrants, duty teams).

Made from the county's own grids and devices with a random stream of their own (seeded from
the county's seed), so adding them changes none of the devices or sites the rest of the
generator (and the scenarios naming its device ids) depends on. Proportions follow the
district in docs/domain.md: 4,064 patrol tags and 76 micro fire stations in 1,089 grids.
Every fire-water sensor sits on a hydrant (the hydrant's ``sensor_id``), and about one
hydrant in two grids has no sensor; every town has a duty team.

A tag marks a site and says how often it must be patrolled: warehouses, factories and
residential buildings weekly, everything else (markets, shops, rented rooms, schools, …)
daily.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

from devices.overrides import ProfileOverrides
from devices.registry import Device, Grid, GridLevel
from devices.resources import Resource, ResourceKind
from simulators import names

TAG_TYPE = "patrol_tag"
TAG_PREFIX = "PT"
TAG_LABEL = "消防巡查点"
TAGS_PER_GRID = 4064 / 1089
STATIONS_PER_GRID = 76 / 1089
UNMONITORED_HYDRANTS_PER_GRID = 0.5
WEEKLY_SITES = ("仓库", "厂房", "栋")  # a residential building's label is "N栋"
_OFFSET_DEG = 0.00002  # ~2 m: a tag or hydrant sits beside the devices of its site


@dataclass(frozen=True, slots=True)
class _Site:
    key: str
    grid: str
    address: str
    lat: float
    lon: float


def _sites(devices: Sequence[Device]) -> dict[str, list[_Site]]:
    """The sites of each basic grid (the position of their first device), in id order."""
    seen: dict[str, _Site] = {}
    for d in devices:
        if d.site and d.grid_code and d.lat is not None and d.lon is not None:
            seen.setdefault(d.site, _Site(d.site, d.grid_code, d.address, d.lat, d.lon))
    by_grid: dict[str, list[_Site]] = defaultdict(list)
    for site in sorted(seen.values(), key=lambda s: s.key):
        by_grid[site.grid].append(site)
    return by_grid


def interval_for(address: str) -> str:
    return "P7D" if address.endswith(WEEKLY_SITES) else "P1D"


def _beside(rng: Random, lat: float, lon: float) -> tuple[float, float]:
    return (
        round(lat + rng.uniform(-_OFFSET_DEG, _OFFSET_DEG), 6),
        round(lon + rng.uniform(-_OFFSET_DEG, _OFFSET_DEG), 6),
    )


def _spread(rng: Random, total: int, slots: int) -> list[int]:
    each, extra = divmod(total, slots)
    lucky = set(rng.sample(range(slots), extra))
    return [each + (i in lucky) for i in range(slots)]


def patrol_tags(
    grids: Sequence[Grid], devices: Sequence[Device], *, seed: int, density: float = 1.0
) -> list[Device]:
    """Patrol tags at the sites of every basic grid that has sites, round robin."""
    rng = Random(f"{seed}:patrol-tags")
    sites = _sites(devices)
    placed = [g for g in grids if g.level is GridLevel.GRID and sites.get(g.code)]
    if not placed:
        return []
    total = round(len(placed) * TAGS_PER_GRID * density)
    tags: list[Device] = []
    for grid, count in zip(placed, _spread(rng, total, len(placed)), strict=True):
        at = sites[grid.code]
        numbers: Counter[str] = Counter()
        for n in range(count):
            site = at[n % len(at)]
            numbers[site.key] += 1
            lat, lon = _beside(rng, site.lat, site.lon)
            tags.append(
                Device(
                    device_id=f"{TAG_PREFIX}-{grid.code}-{n + 1:04d}",
                    type=TAG_TYPE,
                    name=f"{site.address}{TAG_LABEL}{numbers[site.key]}号",
                    lat=lat,
                    lon=lon,
                    address=site.address,
                    site=site.key,
                    grid_code=grid.code,
                    profile=ProfileOverrides(
                        options={"patrol_interval": interval_for(site.address)}
                    ),
                )
            )
    return tags


def resources(grids: Sequence[Grid], devices: Sequence[Device], *, seed: int) -> list[Resource]:
    """Micro fire stations, hydrants (one on every fire-water sensor, and some without) and a
    duty team per town."""
    rng = Random(f"{seed}:resources")
    sites = _sites(devices)
    basic = [g for g in grids if g.level is GridLevel.GRID and sites.get(g.code)]
    if not basic:
        return []
    found: list[Resource] = []

    def contact() -> tuple[str, str]:
        return names.person(rng), names.mobile(rng)

    stations = max(1, round(len(basic) * STATIONS_PER_GRID))
    for grid in sorted(rng.sample(basic, min(stations, len(basic))), key=lambda g: g.code):
        site = sites[grid.code][0]
        lat, lon = _beside(rng, site.lat, site.lon)
        who, phone = contact()
        found.append(
            Resource(
                resource_id=f"MFS-{grid.code}",
                kind=ResourceKind.MICRO_FIRE_STATION,
                lat=lat,
                lon=lon,
                name=f"{grid.name}微型消防站",
                address=site.address,
                grid_code=grid.code,
                contact=who,
                phone=phone,
                detail={"staff": rng.randint(4, 8), "vehicles": rng.randint(0, 2)},
            )
        )
    for d in devices:
        if d.type == "water_pressure_sensor" and d.lat is not None and d.lon is not None:
            found.append(
                Resource(
                    resource_id=f"HY-{d.device_id.removeprefix('WP-')}",
                    kind=ResourceKind.FIRE_HYDRANT,
                    lat=d.lat,
                    lon=d.lon,
                    name=f"{d.address}消火栓",
                    address=d.address,
                    grid_code=d.grid_code,
                    sensor_id=d.device_id,
                )
            )
    plain = round(len(basic) * UNMONITORED_HYDRANTS_PER_GRID)
    for n, grid in enumerate(
        sorted(rng.sample(basic, min(plain, len(basic))), key=lambda g: g.code)
    ):
        site = rng.choice(sites[grid.code])
        lat, lon = _beside(rng, site.lat, site.lon)
        found.append(
            Resource(
                resource_id=f"HY-{grid.code}-U{n + 1:02d}",
                kind=ResourceKind.FIRE_HYDRANT,
                lat=lat,
                lon=lon,
                name=f"{site.address}消火栓",
                address=site.address,
                grid_code=grid.code,
            )
        )
    for town in (g for g in grids if g.level is GridLevel.TOWN):
        grid = next((g for g in basic if g.code.startswith(town.code)), None)
        if grid is None:
            continue
        site = sites[grid.code][0]
        lat, lon = _beside(rng, site.lat, site.lon)
        who, phone = contact()
        found.append(
            Resource(
                resource_id=f"DT-{town.code}",
                kind=ResourceKind.DUTY_TEAM,
                lat=lat,
                lon=lon,
                name=f"{town.name}平安巡防队",
                address=site.address,
                grid_code=grid.code,
                contact=who,
                phone=phone,
            )
        )
    return found
