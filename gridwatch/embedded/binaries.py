"""Find the programs the embedded services run.

We use the distribution's binaries (Debian's `mosquitto` and `postgresql`) rather than
bundling our own, so a failure here is almost always "package not installed": the error
names the package to install.

PostgreSQL on Debian keeps its server programs out of PATH, in
`/usr/lib/postgresql/<major>/bin`, so several majors can sit side by side; we take the
highest major unless an existing data directory pins one (a cluster can only be run by the
major that created it). `mosquitto` lives in `/usr/sbin`, which an ordinary user's PATH
lacks, so the sbin directories are searched after PATH.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from gridwatch.embedded.errors import MissingBinary

__all__ = [
    "PACKAGES",
    "POSTGRES_LIB_ROOT",
    "MissingBinary",
    "find_binary",
    "find_mosquitto",
    "find_postgres_bin_dir",
    "find_postgres_binary",
    "postgres_bin_dirs",
]

#: The Debian package that provides each program we run.
PACKAGES: dict[str, str] = {
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "postgres": "postgresql",
}

POSTGRES_LIB_ROOT = Path("/usr/lib/postgresql")

# Searched after PATH: non-root users on Debian have no sbin in PATH, and mosquitto is there.
_SBIN_DIRS = (Path("/usr/local/sbin"), Path("/usr/sbin"), Path("/sbin"))

_POSTGRES_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _path_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]


def find_binary(
    name: str, *, package: str | None = None, extra_dirs: Iterable[Path] | None = None
) -> Path:
    """Return the absolute path of program `name`.

    Searched in order: `extra_dirs` (when not given, for PostgreSQL's programs, Debian's
    versioned directories, highest major first), PATH, the sbin directories. `package`
    overrides the package named in the error (defaults to `PACKAGES[name]`, if known).
    """
    if extra_dirs is not None:
        first = list(extra_dirs)
    elif PACKAGES.get(name) == "postgresql":
        first = postgres_bin_dirs()
    else:
        first = []
    searched: list[str] = []
    for directory in [*first, *_path_dirs(), *_SBIN_DIRS]:
        if str(directory) in searched:
            continue
        searched.append(str(directory))
        candidate = directory / name
        if _is_executable(candidate):
            return candidate.absolute()
    raise MissingBinary(name, package or PACKAGES.get(name), searched)


def find_mosquitto() -> Path:
    """Return the path of the mosquitto broker."""
    return find_binary("mosquitto", package="mosquitto")


def _version_key(directory: Path) -> tuple[int, ...]:
    # "15" -> (15,), "9.6" -> (9, 6): numeric, so 10 sorts above 9.6.
    return tuple(int(part) for part in re.findall(r"\d+", directory.parent.name))


def postgres_bin_dirs(root: Path = POSTGRES_LIB_ROOT) -> list[Path]:
    """Return Debian's `/usr/lib/postgresql/<major>/bin` directories, highest major first."""
    if not root.is_dir():
        return []
    found = [
        entry / "bin"
        for entry in root.iterdir()
        if re.fullmatch(r"\d+(\.\d+)?", entry.name) and (entry / "bin").is_dir()
    ]
    return sorted(found, key=_version_key, reverse=True)


def _package_for_version(version: str | None) -> str:
    return f"postgresql-{version}" if version else "postgresql"


def find_postgres_binary(
    name: str, *, version: str | None = None, root: Path = POSTGRES_LIB_ROOT
) -> Path:
    """Return PostgreSQL program `name`: the highest Debian major first, then PATH.

    With `version`, only that major's Debian directory is searched before PATH.
    """
    dirs = postgres_bin_dirs(root)
    if version is not None:
        dirs = [d for d in dirs if d.parent.name == version]
    return find_binary(name, package=_package_for_version(version), extra_dirs=dirs)


def find_postgres_bin_dir(
    *,
    version: str | None = None,
    root: Path = POSTGRES_LIB_ROOT,
    programs: Sequence[str] = _POSTGRES_SERVER_PROGRAMS,
) -> Path:
    """Return one directory holding all of `programs` (by default initdb, pg_ctl, postgres).

    One directory, not one lookup per program: initdb of one major with pg_ctl of another
    produces a cluster that will not start. Debian's directories come first (highest major,
    or exactly `version` when an existing cluster pins it), then the directory of the first
    `programs[0]` found on PATH (e.g. a source build in /usr/local/pgsql/bin).
    """
    dirs = postgres_bin_dirs(root)
    if version is not None:
        dirs = [d for d in dirs if d.parent.name == version]
    for directory in dirs:
        if all(_is_executable(directory / p) for p in programs):
            return directory
    package = _package_for_version(version)
    first = find_binary(programs[0], package=package, extra_dirs=dirs)
    for program in programs[1:]:
        if not _is_executable(first.parent / program):
            raise MissingBinary(program, package, [str(first.parent)])
    return first.parent
