"""``gridwatch simulate county|fleet``: a fictional county to import, and its devices talking."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devices.messages import Kind
from gridwatch.cli import common
from gridwatch.endpoints import command_broker_url
from gridwatch.mqtt_publish import BoundedPublisher, PublishError
from simulators.county import CountySpec, CountySpecError, generate_county
from simulators.county_files import (
    DEVICE_FORMATS,
    GRIDS_FILE,
    find_county_files,
    write_county,
)
from simulators.fleet import FleetConfig, FleetModel, IntervalOverrides
from simulators.fleet_input import FleetInputError, load_devices, place_in_grids, within
from simulators.fleet_runner import ProgressLine, RunLimits, render_stats, run_fleet
from simulators.scenario import ScenarioError, load_scenario
from simulators.signals import simulated_types

app = typer.Typer(help="Simulated counties and device fleets.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
_DEFAULTS = CountySpec()


@app.command("county")
def county(
    out: Annotated[Path, typer.Option("--out", help="Directory for grids.geojson and devices.")],
    code: Annotated[str, typer.Option(help="6-digit county code.")] = _DEFAULTS.code,
    name: Annotated[str, typer.Option(help="County name.")] = _DEFAULTS.name,
    towns: Annotated[int, typer.Option(help="Towns/streets (镇街).")] = _DEFAULTS.towns,
    villages: Annotated[
        int, typer.Option(help="Villages/communities (村居) per town.")
    ] = _DEFAULTS.villages_per_town,
    grids: Annotated[
        int, typer.Option(help="Basic grids per village.")
    ] = _DEFAULTS.grids_per_village,
    streets: Annotated[
        int | None, typer.Option(help="How many towns are 街道 (default: a third).")
    ] = None,
    density: Annotated[
        float, typer.Option(help="Devices per grid relative to the field's proportions.")
    ] = _DEFAULTS.density,
    cameras: Annotated[int, typer.Option(help="Cameras (RTSP placeholders).")] = _DEFAULTS.cameras,
    seed: Annotated[int, typer.Option(help="Same seed, same county.")] = _DEFAULTS.seed,
    cell_m: Annotated[
        float, typer.Option("--cell-m", help="Nominal basic grid size in metres.")
    ] = _DEFAULTS.cell_m,
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help=f"Device file format(s): {', '.join(DEVICE_FORMATS)}."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Generate a fictional county: the grid tree with members, and devices in sites.

    --towns 11 --villages 11 --grids 9 gives the 1,089 grids and 2,861 / 2,113 / 430
    devices of the district in the domain notes.
    """
    try:
        spec = CountySpec(
            code=code,
            name=name,
            towns=towns,
            villages_per_town=villages,
            grids_per_village=grids,
            streets=streets,
            density=density,
            cameras=cameras,
            seed=seed,
            cell_m=cell_m,
        )
    except CountySpecError as exc:
        raise common.UserError(str(exc)) from None
    chosen = formats or ["csv"]
    bad = [f for f in chosen if f not in DEVICE_FORMATS]
    if bad:
        raise common.UserError(f"--format must be one of {', '.join(DEVICE_FORMATS)}, got {bad}")
    if (out / GRIDS_FILE).exists() and not force:
        raise common.UserError(f"{out / GRIDS_FILE} exists: use --force to overwrite")
    generated = generate_county(spec)
    files = write_county(generated, out, formats=chosen)
    table = Table("", "count", title=f"{spec.name} ({spec.code}), seed {spec.seed}")
    for key, value in generated.counts().items():
        table.add_row(key, f"{value:,}")
    console.print(table)
    console.print(f"wrote {files.grids}")
    for path in files.devices:
        console.print(f"wrote {path}")
    console.print(
        f"import with: gridwatch grids import {files.grids} && "
        f"gridwatch devices import {files.devices[0]}"
    )


@app.command("fleet")
def fleet(
    county_dir: Annotated[
        Path | None, typer.Option("--county-dir", help="A directory `simulate county` wrote.")
    ] = None,
    devices: Annotated[Path | None, typer.Option("--devices", help="Devices CSV/JSONL.")] = None,
    grids: Annotated[
        Path | None,
        typer.Option("--grids", help="Grids GeoJSON (places devices without grid_code)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Broker URL (default: the running gridwatch's, else 127.0.0.1:1883)."),
    ] = None,
    topic_root: Annotated[
        str | None, typer.Option("--topic-root", help="Default: the configured mqtt.topic_root.")
    ] = None,
    username: Annotated[str | None, typer.Option(help="Broker user name.")] = None,
    password: Annotated[
        str | None, typer.Option(help="Broker password.", envvar="GRIDWATCH_SIM_PASSWORD")
    ] = None,
    rate: Annotated[float, typer.Option(help="Most messages per second (0: no limit).")] = 5000.0,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per second (300: 5 min ticks each second).")
    ] = 1.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many (wall) seconds.")
    ] = None,
    messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario file (TOML or JSON) played on top.")
    ] = None,
    within_code: Annotated[
        str | None, typer.Option("--within", help="Only devices under this grid code.")
    ] = None,
    intervals: Annotated[
        list[str] | None,
        typer.Option(
            "--interval", help="TYPE.KIND=SECONDS (KIND telemetry|heartbeat; 0 = off), repeatable."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the values' noise.")] = 1,
    qos: Annotated[int, typer.Option(help="MQTT QoS (0 or 1).", min=0, max=1)] = 1,
    offline: Annotated[
        bool, typer.Option(help="Publish retained `offline` statuses on stop.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Run the devices of a county over MQTT: telemetry, heartbeats, a retained online status,
    and a scenario's steps. Stop with Ctrl-C, --duration or --messages."""
    devices_path, grids_path = _inputs(county_dir, devices, grids)
    try:
        limits = RunLimits(rate=rate or None, duration=duration, messages=messages)
    except ValueError as exc:
        raise common.UserError(str(exc)) from None
    if url is None or topic_root is None:
        settings = common.settings()
        url = url or command_broker_url(settings) or DEFAULT_BROKER
        topic_root = topic_root or settings.mqtt.topic_root
    try:
        chosen = load_devices(devices_path)
        if within_code is not None:
            if grids_path is not None:
                chosen = place_in_grids(chosen, grids_path)
            chosen = within(chosen, within_code)
        loaded = load_scenario(scenario) if scenario is not None else None
        config = FleetConfig(
            start_ts=time.time(),
            speed=speed,
            seed=seed,
            topic_root=topic_root,
            intervals=_parse_intervals(intervals or []),
        )
        model = FleetModel(chosen, config)
        if loaded is not None:
            loaded.install(model)
    except (FleetInputError, ScenarioError, ValueError) as exc:
        raise common.UserError(str(exc)) from None
    if not model.sims:
        raise common.UserError("no device to simulate (check --within and the device types)")
    for type_key, count in sorted(model.skipped.items()):
        err_console.print(f"skipping {count:,} {type_key} device(s): no MQTT uplink simulated")
    if loaded is not None and duration is not None and loaded.ends_at() > duration * speed:
        err_console.print(
            f"note: the scenario runs to +{loaded.ends_at():.0f} s (simulated) but the fleet "
            f"stops at +{duration * speed:.0f} s"
        )
    err_console.print(f"{len(model.sims):,} devices → {url} under {topic_root}/up/")
    try:
        with BoundedPublisher(url, username=username, password=password) as publisher:
            if quiet:
                report = run_fleet(
                    model, publisher, qos=qos, limits=limits, offline_on_stop=offline
                )
            else:
                with ProgressLine(err_console, devices=len(model.sims)) as line:
                    report = run_fleet(
                        model,
                        publisher,
                        qos=qos,
                        limits=limits,
                        offline_on_stop=offline,
                        on_progress=line,
                    )
    except PublishError as exc:
        raise common.UserError(str(exc)) from None
    console.print(render_stats(report.stats, len(model.sims)))
    console.print(
        f"stopped: {report.stopped.value}; {report.offline_sent:,} offline status(es) published"
    )


def _inputs(
    county_dir: Path | None, devices: Path | None, grids: Path | None
) -> tuple[Path, Path | None]:
    if county_dir is not None:
        if devices is not None or grids is not None:
            raise common.UserError("give --county-dir or --devices/--grids, not both")
        try:
            files = find_county_files(county_dir)
        except FileNotFoundError as exc:
            raise common.UserError(str(exc)) from None
        return files.devices[0], files.grids
    if devices is None:
        raise common.UserError("give --county-dir DIR or --devices FILE")
    return devices, grids


def _parse_intervals(items: list[str]) -> IntervalOverrides:
    """``smoke_detector.telemetry=600`` → ``{("smoke_detector", Kind.TELEMETRY): 600.0}``."""
    parsed: dict[tuple[str, Kind], float | None] = {}
    types = simulated_types()
    for item in items:
        key, sep, value = item.partition("=")
        type_key, dot, kind_name = key.partition(".")
        try:
            if not sep or not dot:
                raise ValueError
            kind = Kind(kind_name)
            seconds = float(value)
        except ValueError:
            raise common.UserError(
                f"--interval {item!r}: expected TYPE.KIND=SECONDS, "
                "e.g. smoke_detector.telemetry=600"
            ) from None
        if type_key not in types:
            raise common.UserError(
                f"--interval {item!r}: {type_key!r} is not simulated (one of {', '.join(types)})"
            )
        parsed[type_key, kind] = seconds if seconds > 0 else None
    return parsed
