"""The shape of grid codes: statistical division codes plus the basic grid's ``-NN`` suffix.

Because each code extends its parent's, a code alone tells its level and every ancestor.
The importer uses that to check a file against the tree already stored (where only the
codes are known), and other rooms use it to build event topics without a lookup.
"""

from __future__ import annotations

import re

from devices.registry import GridLevel

# ASCII digits only: `\d` would also take full-width digits (１２３) pasted from documents.
_SHAPES: dict[GridLevel, re.Pattern[str]] = {
    GridLevel.COUNTY: re.compile(r"[0-9]{6}"),
    GridLevel.TOWN: re.compile(r"[0-9]{9}"),
    GridLevel.VILLAGE: re.compile(r"[0-9]{12}"),
    GridLevel.GRID: re.compile(r"[0-9]{12}-[0-9]{2}"),
}

_EXAMPLES: dict[GridLevel, str] = {
    GridLevel.COUNTY: "6 digits, e.g. 440981",
    GridLevel.TOWN: "9 digits starting with its county's code, e.g. 440981001",
    GridLevel.VILLAGE: "12 digits starting with its town's code, e.g. 440981001005",
    GridLevel.GRID: "its village's code plus -NN, e.g. 440981001005-03",
}

PARENT_LEVEL: dict[GridLevel, GridLevel | None] = {
    GridLevel.COUNTY: None,
    GridLevel.TOWN: GridLevel.COUNTY,
    GridLevel.VILLAGE: GridLevel.TOWN,
    GridLevel.GRID: GridLevel.VILLAGE,
}

_PARENT_LENGTH: dict[GridLevel, int] = {
    GridLevel.TOWN: 6,
    GridLevel.VILLAGE: 9,
    GridLevel.GRID: 12,
}


def level_of_code(code: str) -> GridLevel | None:
    """The level a code's shape says, or None when it fits no level."""
    for level, shape in _SHAPES.items():
        if shape.fullmatch(code):
            return level
    return None


def shape_problem(code: str, level: GridLevel) -> str | None:
    """Why ``code`` cannot be a code of ``level``, or None when it can."""
    if _SHAPES[level].fullmatch(code):
        return None
    return f"code {code!r} does not fit level {level.value}: expected {_EXAMPLES[level]}"


def parent_code(code: str) -> str | None:
    """The parent's code as the code itself spells it; None for a county or a bad code."""
    level = level_of_code(code)
    if level is None or level is GridLevel.COUNTY:
        return None
    return code[: _PARENT_LENGTH[level]]


def code_ancestors(code: str) -> tuple[str, ...]:
    """County down to parent, read off the code (valid codes only; otherwise empty)."""
    chain: list[str] = []
    current = parent_code(code)
    while current is not None:
        chain.append(current)
        current = parent_code(current)
    return tuple(reversed(chain))


def is_basic_grid_code(code: str) -> bool:
    return _SHAPES[GridLevel.GRID].fullmatch(code) is not None
