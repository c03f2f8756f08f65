"""``gridwatch config show``."""

from __future__ import annotations

import orjson
import typer

from gridwatch.cli import common
from gridwatch.config import masked

app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


@app.command("show")
def show() -> None:
    """Print the effective settings (file + GRIDWATCH_* environment + defaults), secrets masked."""
    data = masked(common.settings())
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@app.command("reference")
def reference() -> None:
    """Print the configuration reference (Markdown) generated from the config model."""
    from gridwatch.config_reference import render

    typer.echo(render(), nl=False)
