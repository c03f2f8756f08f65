"""The ``gridwatch`` command."""

from __future__ import annotations

import sys

import typer

import detectors  # noqa: F401  (registers the `detectors` key of device profile overrides)
from gridwatch.cli import (
    broker_cmd,
    cameras_cmd,
    common,
    config_cmd,
    deadletter_cmd,
    demo_cmd,
    registry_cmd,
    report_cmd,
    resources_cmd,
    run_cmd,
    simulate_cmd,
    tokens_cmd,
)

app = typer.Typer(
    name="gridwatch",
    help="Real-time alert ingestion for grid-based public-safety management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.callback()(common.global_options)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.add_typer(config_cmd.app, name="config")
app.add_typer(registry_cmd.grids_app, name="grids")
app.add_typer(registry_cmd.devices_app, name="devices")
app.add_typer(resources_cmd.app, name="resources")
app.add_typer(deadletter_cmd.app, name="deadletter")
simulate_cmd.app.add_typer(cameras_cmd.app, name="cameras")
app.add_typer(simulate_cmd.app, name="simulate")
app.command("report")(report_cmd.report)
app.add_typer(tokens_cmd.app, name="tokens")
app.add_typer(broker_cmd.app, name="broker")


def main() -> None:
    try:
        app()
    except common.UserError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        sys.exit(2)
