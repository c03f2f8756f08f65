"""Put parsed devices into registered basic grids: check a given grid_code or derive one.

Pure (the grids come in as a :class:`GridLocator` and a set of codes), so the store can
run it per batch between reading the file and copying rows, and tests need no database.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from devices.device_import import ParsedDevice
from devices.geo import GridLocator
from devices.registry import Device, ImportIssue, Severity


@dataclass(frozen=True, slots=True)
class Placed:
    """Devices of one batch that have a registered grid, and what was found on the way."""

    devices: tuple[Device, ...]
    issues: tuple[ImportIssue, ...]


def place_devices(
    parsed: Sequence[ParsedDevice],
    locator: GridLocator,
    basic_grids: Collection[str],
    *,
    source: str,
) -> Placed:
    """Every device with a grid_code that names a registered basic grid.

    A device without grid_code gets the grid its point lies in (``grid_code_derived``);
    one whose point lies in no grid, or whose grid_code is unknown, is a row error. A
    given grid_code that disagrees with the point is kept (the file is explicit) and warned
    about, since it usually means a wrong code or a wrong coordinate.
    """
    found = _locate(parsed, locator)
    devices: list[Device] = []
    issues: list[ImportIssue] = []

    def report(item: ParsedDevice, severity: Severity, reason: str) -> None:
        key = item.device.device_id
        issues.append(ImportIssue(source, severity, reason, line=item.line, key=key))

    for item, located in zip(parsed, found, strict=True):
        device = item.device
        if device.grid_code is None:
            if located is None:
                report(
                    item,
                    Severity.ERROR,
                    f"point lat {device.lat}, lon {device.lon} lies in no registered basic grid",
                )
                continue
            devices.append(replace(device, grid_code=located, grid_code_derived=True))
            continue
        if device.grid_code not in basic_grids:
            report(item, Severity.ERROR, f"grid_code {device.grid_code} is not a registered grid")
            continue
        if located is not None and located != device.grid_code:
            report(
                item,
                Severity.WARNING,
                f"point lat {device.lat}, lon {device.lon} lies in grid {located}, "
                f"not in the given grid_code {device.grid_code}",
            )
        devices.append(replace(device, grid_code_derived=False))
    return Placed(tuple(devices), tuple(issues))


def _locate(parsed: Sequence[ParsedDevice], locator: GridLocator) -> list[str | None]:
    """The grid of each device's point (None without a point), in one bulk tree query."""
    found: list[str | None] = [None] * len(parsed)
    positions: list[int] = []
    lons: list[float] = []
    lats: list[float] = []
    for n, item in enumerate(parsed):
        if item.device.lat is not None and item.device.lon is not None:
            positions.append(n)
            lons.append(item.device.lon)
            lats.append(item.device.lat)
    for n, code in zip(positions, locator.locate_many(lons, lats), strict=True):
        found[n] = code
    return found
