"""The grid tree check: every feature's parent exists, sits one level up, and prefixes its code.

Kept apart from reading features (``devices.grids``) because the walk is the subtle part: a
chain of in-file parents is decided top-down, a parent rejected for its own reasons takes
its children with it, and a chain that meets itself is a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from devices.grid_codes import PARENT_LEVEL, code_ancestors, level_of_code, parent_code
from devices.registry import Grid, GridLevel, Severity

Report = Callable[[int | None, str, str | None, Severity], None]
"""``report(feature_index, reason, code, severity)``: how the tree check reports."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A feature that passed its own checks, before the tree was checked."""

    index: int
    grid: Grid


@dataclass(frozen=True, slots=True)
class Known:
    """Where a parent code may be found while checking the tree."""

    candidates: Mapping[str, Candidate]
    registered: frozenset[str]
    rejected: frozenset[str]  # codes of features that failed their own checks


def check_tree(known: Known, report: Report) -> dict[str, tuple[str, ...] | None]:
    """Ancestors of every candidate, or None for the rejected (whose reason is reported).

    Walks each chain of in-file parents up to something already decided (a root, a
    registered code, or a resolved feature), then decides the chain top-down; a chain that
    meets itself is a cycle and every feature on it is rejected.
    """
    candidates = known.candidates
    decided: dict[str, tuple[str, ...] | None] = {}
    for start in candidates:
        chain: list[str] = []
        current: str | None = start
        while current is not None and current in candidates and current not in decided:
            if current in chain:
                loop = chain[chain.index(current) :]
                route = " → ".join([*loop, loop[0]])
                for code in loop:
                    decided[code] = None
                    report(candidates[code].index, f"parent cycle: {route}", code, Severity.ERROR)
                break
            chain.append(current)
            current = candidates[current].grid.parent
        for code in reversed(chain):
            if code in decided:
                continue
            feature = candidates[code]
            ancestors, why = _link(feature.grid, known, decided)
            decided[code] = ancestors
            if why is not None:
                report(feature.index, why, code, Severity.ERROR)
    return decided


def _link(
    grid: Grid, known: Known, decided: Mapping[str, tuple[str, ...] | None]
) -> tuple[tuple[str, ...] | None, str | None]:
    """Check one grid against its (already decided) parent: existence, level, code prefix."""
    wanted = PARENT_LEVEL[grid.level]
    if grid.parent is None:
        if wanted is None:
            return (), None
        return None, f"a {grid.level.value} needs a parent {wanted.value}"
    if wanted is None:
        return None, f"a county is the top of the tree and has no parent (got {grid.parent!r})"
    parent_level: GridLevel | None
    if grid.parent in known.candidates:
        parent_level = known.candidates[grid.parent].grid.level
        parent_ancestors = decided.get(grid.parent)
        if parent_ancestors is None:
            return None, f"parent {grid.parent} was rejected"
    elif grid.parent in known.rejected:
        # The file's version of the parent was meant, even if an older one is registered.
        return None, f"parent {grid.parent} was rejected"
    elif grid.parent in known.registered:
        parent_level = level_of_code(grid.parent)
        parent_ancestors = code_ancestors(grid.parent)
    else:
        return None, f"parent {grid.parent} is neither in this file nor already registered"
    if parent_level is not wanted:
        shown = parent_level.value if parent_level else "no known level"
        return None, (
            f"a {grid.level.value}'s parent must be a {wanted.value}; {grid.parent} is {shown}"
        )
    if parent_code(grid.code) != grid.parent:
        return None, f"code {grid.code} does not extend its parent's code {grid.parent}"
    return (*parent_ancestors, grid.parent), None
