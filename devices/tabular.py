"""Rows of registry files (CSV or JSON lines), with a line number each, before any field is
checked: shared by the device and the resource importers.

CSV from a Chinese Excel is often GB18030, so a CSV file's encoding is sniffed (UTF-8 with
or without BOM when its head decodes as such, else GB18030); JSON is UTF-8 by definition.
Structural problems (no header, a header the caller refuses, a row longer than the header,
a line that is not a JSON object) come back as issues with their line, in order with the
rows, so one bad row never hides the good ones.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TextIO, TypeVar

import orjson

from devices.registry import ImportIssue, Severity

_SNIFF_BYTES = 64 * 1024
T = TypeVar("T")

RawRow = tuple[int, Mapping[str, object]]
HeaderCheck = Callable[[list[str], int], Iterable[ImportIssue]]
"""Issues of a CSV header at a line; an error among them stops the file."""


class TableFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


EXTENSIONS = {
    ".csv": TableFormat.CSV,
    ".jsonl": TableFormat.JSONL,
    ".ndjson": TableFormat.JSONL,
}


def format_for(path: Path) -> TableFormat | None:
    return EXTENSIONS.get(path.suffix.lower())


def open_table(path: Path, fmt: TableFormat) -> tuple[TextIO, str]:
    """The file opened as text in its encoding, and that encoding's name."""
    encoding = "utf-8-sig" if fmt is TableFormat.JSONL else sniff_encoding(path)
    return path.open(encoding=encoding, newline=""), encoding


def read_table(
    path: Path,
    fmt: TableFormat,
    rows_of: Callable[[Iterable[str]], Iterator[T]],
) -> Iterator[T | ImportIssue]:
    """What ``rows_of`` makes of the file's lines; a decoding error ends it as an issue."""
    handle, encoding = open_table(path, fmt)
    with handle:
        try:
            yield from rows_of(handle)
        except UnicodeDecodeError as exc:
            yield ImportIssue(str(path), Severity.ERROR, f"file is not valid {encoding}: {exc}")


def sniff_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the head decodes as such, else GB18030."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"


def csv_rows(
    lines: Iterable[str], source: str, check_header: HeaderCheck, *, key_column: str
) -> Iterator[RawRow | ImportIssue]:
    """Rows as ``(line where the row starts, {column: cell})``; blank rows skipped."""
    reader = csv.reader(lines)
    header: list[str] | None = None
    last_line = 0
    for cells in reader:
        line, last_line = last_line + 1, reader.line_num  # where the row starts
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lstrip("\ufeff") for cell in cells]
            issues = list(check_header(header, line))
            yield from issues
            if any(issue.severity is Severity.ERROR for issue in issues):
                return
            continue
        if len(cells) > len(header):
            at = header.index(key_column) if key_column in header else None
            yield ImportIssue(
                source,
                Severity.ERROR,
                f"row has {len(cells)} cells but the header has {len(header)}",
                line=line,
                key=(cells[at].strip() or None) if at is not None else None,
            )
            continue
        yield line, dict(zip(header, cells, strict=False))
    if header is None:
        yield ImportIssue(source, Severity.ERROR, "empty file: no header row")


def jsonl_rows(lines: Iterable[str], source: str) -> Iterator[RawRow | ImportIssue]:
    """One JSON object a line; blank lines skipped."""
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield ImportIssue(source, Severity.ERROR, f"not JSON: {exc}", line=line)
            continue
        if not isinstance(row, dict):
            yield ImportIssue(source, Severity.ERROR, "each line must be a JSON object", line=line)
            continue
        yield line, row


def unknown_fields(
    source: str, line: int, names: Iterable[str], known: Iterable[str], warned: set[str]
) -> Iterator[ImportIssue]:
    """Each unknown field once per file: likely a typo (``grid`` for ``grid_code``)."""
    known_names = set(known)
    for name in names:
        if name and name not in known_names and name not in warned:
            warned.add(name)
            yield ImportIssue(
                source, Severity.WARNING, f"unknown field {name!r} is ignored", line=line
            )
