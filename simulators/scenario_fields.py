"""Where a scenario error is, and typed reads of a table's keys that name it when they fail.

Every message starts with the file, then the table (``step 3``, ``devices[2]``, ``[fleet]``)
and, for TOML, the line of its header, so a person can fix the file without guessing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ScenarioError(ValueError):
    """A scenario cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Where:
    source: str
    number: int | None  # 1-based, as a person counts; None for a single table
    line: int | None = None
    what: str = "step"

    def __str__(self) -> str:
        line = f" (line {self.line})" if self.line is not None else ""
        number = "" if self.number is None else f" {self.number}"
        return f"{self.source}: {self.what}{number}{line}"

    def error(self, reason: str) -> ScenarioError:
        return ScenarioError(f"{self}: {reason}")


def header_lines(text: str, table: str) -> list[int]:
    """Lines (1-based) of every ``[[table]]`` header in TOML text, in order."""
    pattern = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(table)}[ \t]*\]\]", re.MULTILINE)
    return [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]


def table_line(text: str, table: str) -> int | None:
    """Line (1-based) of a ``[table]`` header in TOML text, if written as one."""
    pattern = re.compile(rf"^[ \t]*\[[ \t]*{re.escape(table)}[ \t]*\]", re.MULTILINE)
    found = pattern.search(text)
    return None if found is None else text.count("\n", 0, found.start()) + 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Fields:
    """Typed reads of one table's keys; every failure names the table and the key."""

    def __init__(self, raw: Mapping[str, Any], where: Where) -> None:
        self.raw = raw
        self.where = where

    def unknown(self, allowed: frozenset[str], what: str) -> None:
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            raise self.where.error(
                f"unknown key(s) {', '.join(unknown)} for {what} "
                f"(it takes {', '.join(sorted(allowed))})"
            )

    def number(
        self, key: str, *, required: bool = True, positive: bool = False, signed: bool = False
    ) -> float | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.where.error(f"{key} is required")
            return None
        if not _is_number(value):
            raise self.where.error(f"{key} must be a number, got {value!r}")
        number = float(value)
        if signed:
            if not math.isfinite(number):
                raise self.where.error(f"{key} must be a finite number, got {value!r}")
            return number
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            raise self.where.error(f"{key} must be a finite number {bound}, got {value!r}")
        return number

    def seconds(self, key: str, *, positive: bool = False, signed: bool = False) -> float:
        value = self.number(key, positive=positive, signed=signed)
        assert value is not None  # required
        return value

    def integer(self, key: str, *, default: int, minimum: int = 1) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.where.error(f"{key} must be a whole number >= {minimum}, got {value!r}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.where.error(f"{key} must be true or false, got {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            raise self.where.error(f"{key} must be non-empty text, got {value!r}")
        return value

    def pair(self, key: str) -> tuple[float, float]:
        value = self.raw.get(key)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(_is_number(v) and math.isfinite(v) for v in value)
        ):
            raise self.where.error(f"{key} must be [from, to], two numbers, got {value!r}")
        return float(value[0]), float(value[1])

    def table(self, key: str) -> Mapping[str, Any]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            raise self.where.error(f"{key} must be a table/object, got {value!r}")
        return value
