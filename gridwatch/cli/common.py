"""What every subcommand shares: the config file option, loading settings, clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer

from gridwatch.config import ConfigError, Settings, load_settings
from gridwatch.embedded.binaries import MissingBinary

T = TypeVar("T")


class UserError(Exception):
    """Something the user can fix; printed without a traceback."""


class _State:
    config_path: Path | None = None


def global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML config file (GRIDWATCH_* variables override it)."
        ),
    ] = None,
) -> None:
    _State.config_path = config


def settings() -> Settings:
    try:
        return load_settings(_State.config_path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except MissingBinary as exc:
        raise UserError(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise UserError(f"database unreachable: {exc}") from None


def fail(message: str, **_: Any) -> None:
    raise UserError(message)
