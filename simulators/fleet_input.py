"""The devices a fleet plays, read with the registry's own importer (the contract's formats).

Reading through :mod:`devices.device_import` means a file the fleet accepts is one
``gridwatch devices import`` accepts too. ``within`` narrows the fleet to a subtree (a
county, town, village or basic grid code); devices without a ``grid_code`` are placed by
point-in-polygon in the grids file, as the registry would place them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from devices.device_import import ParsedDevice, iter_devices
from devices.geo import GridLocator
from devices.grids import load_grids
from devices.registry import Device, ImportIssue

_SHOWN_ISSUES = 5


class FleetInputError(ValueError):
    """The devices or grids file cannot be used; the message lists the first problems."""


def load_devices(path: Path) -> list[Device]:
    """Every device of a CSV or JSON-lines file; any row error fails the whole file."""
    if not path.is_file():
        raise FleetInputError(f"{path}: no such file")
    devices: list[Device] = []
    errors: list[ImportIssue] = []
    for row in iter_devices(path):
        if isinstance(row, ParsedDevice):
            devices.append(row.device)
        elif row.is_error:
            errors.append(row)
    if errors:
        raise FleetInputError(_summary(f"{path}: {len(errors)} bad row(s)", errors))
    return devices


def place_in_grids(devices: Sequence[Device], grids_path: Path) -> list[Device]:
    """Devices without a grid_code get the basic grid their point lies in (if any)."""
    if all(d.grid_code is not None for d in devices):
        return list(devices)
    if not grids_path.is_file():
        raise FleetInputError(f"{grids_path}: no such file")
    imported = load_grids(grids_path)
    if imported.errors:
        raise FleetInputError(
            _summary(f"{grids_path}: {len(imported.errors)} bad feature(s)", imported.errors)
        )
    locator = GridLocator.from_grids(imported.grids)
    placed = []
    for device in devices:
        if device.grid_code is None and device.lat is not None and device.lon is not None:
            code = locator.locate(device.lon, device.lat)
            device = replace(device, grid_code=code, grid_code_derived=code is not None)
        placed.append(device)
    return placed


def within(devices: Iterable[Device], code: str) -> list[Device]:
    """Devices in the subtree of ``code``: a grid code extends all of its ancestors' codes."""
    return [d for d in devices if d.grid_code is not None and d.grid_code.startswith(code)]


def _summary(head: str, issues: Sequence[ImportIssue]) -> str:
    lines = [head, *(f"  {issue}" for issue in issues[:_SHOWN_ISSUES])]
    if len(issues) > _SHOWN_ISSUES:
        lines.append(f"  … and {len(issues) - _SHOWN_ISSUES} more")
    return "\n".join(lines)
