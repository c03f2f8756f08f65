"""``gridwatch simulate county|fleet``: a fictional county to import, and its devices talking."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devices.messages import Kind
from gridwatch.cli import common
from gridwatch.endpoints import command_broker_url
from gridwatch.mqtt_publish import PublishError
from simulators.county import CountySpec, CountySpecError, generate_county
from simulators.county_files import (
    DEVICE_FORMATS,
    GRIDS_FILE,
    find_county_files,
    write_county,
)
from simulators.dry_run import dry_run, write_jsonl
from simulators.fleet import FleetModel, IntervalOverrides
from simulators.fleet_input import FleetInputError
from simulators.fleet_runner import ProgressLine, render_stats, run_fleet
from simulators.fleet_setup import FleetOptions, FleetPlan, plan_fleet
from simulators.fleet_workers import BrokerSpec, WorkerError, run_workers
from simulators.scenario import ScenarioError
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
        float | None,
        typer.Option(help="Stop once everything due in this many (wall) seconds is sent."),
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
    seed: Annotated[
        int | None, typer.Option(help="Seed of the values' noise (default: scenario's, else 1).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="t = 0 as ISO 8601 with a zone, or epoch seconds (default: now)."),
    ] = None,
    regular: Annotated[
        bool | None,
        typer.Option(
            "--regular/--no-regular",
            help="Regular traffic (statuses, telemetry, heartbeats) besides the scenario.",
        ),
    ] = None,
    clock_sigma: Annotated[
        float | None,
        typer.Option("--clock-sigma", help="Device clock offsets' spread, seconds (default 2)."),
    ] = None,
    clock_wrong_share: Annotated[
        float | None,
        typer.Option(
            "--clock-wrong-share", help="Share of devices whose clock is hours off (0.005)."
        ),
    ] = None,
    qos: Annotated[int, typer.Option(help="MQTT QoS (0 or 1).", min=0, max=1)] = 1,
    mqtt_version: Annotated[
        str, typer.Option("--mqtt-version", help="MQTT protocol: 3.1.1 or 5.")
    ] = "3.1.1",
    offline: Annotated[
        bool, typer.Option(help="Publish retained `offline` statuses on stop.")
    ] = True,
    workers: Annotated[
        int, typer.Option(help="Publisher processes, each with a share of the devices.", min=1)
    ] = 1,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write the messages as JSON lines instead of publishing."),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", help="Where --dry-run writes (- for standard output).")
    ] = Path("-"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Run the devices of a county over MQTT: telemetry, heartbeats, a retained online status,
    and a scenario's steps. Stop with Ctrl-C, --duration or --messages."""
    devices_path, grids_path = _inputs(county_dir, devices, grids, required=scenario is None)
    if not dry_run and (url is None or topic_root is None):
        settings = common.settings()
        url = url or command_broker_url(settings) or DEFAULT_BROKER
        topic_root = topic_root or settings.mqtt.topic_root
    options = FleetOptions(
        now=time.time(),
        devices=devices_path,
        grids=grids_path,
        within=within_code,
        scenario=scenario,
        start=_parse_start(start),
        seed=seed,
        speed=speed,
        topic_root=topic_root or _configured_topic_root(),
        intervals=_parse_intervals(intervals or []),
        clock_sigma_s=clock_sigma,
        clock_wrong_share=clock_wrong_share,
        regular=regular,
        duration=duration,
        messages=messages,
        rate=rate or None,
    )
    try:
        plan = plan_fleet(options)
        model = plan.model()
    except (FleetInputError, ScenarioError, ValueError) as exc:
        raise common.UserError(str(exc)) from None
    if not model.sims:
        raise common.UserError("no device to simulate (check --within and the device types)")
    for type_key, count in sorted(model.skipped.items()):
        err_console.print(f"skipping {count:,} {type_key} device(s): no MQTT uplink simulated")
    loaded = plan.scenario
    end = plan.limits.duration
    if loaded is not None and end is not None and loaded.ends_at() > end * speed:
        err_console.print(
            f"note: the scenario runs to +{loaded.ends_at():.0f} s (simulated) but the fleet "
            f"stops at +{end * speed:.0f} s"
        )
    if dry_run:
        _dry_run(plan, model, qos=qos, offline=offline, out=out)
        return
    assert url is not None
    err_console.print(f"{len(model.sims):,} devices → {url} under {options.topic_root}/up/")
    try:
        broker = BrokerSpec(url, username, password, mqtt_version=mqtt_version)
    except ValueError as exc:
        raise common.UserError(f"--mqtt-version: {exc}") from None
    try:
        with contextlib.ExitStack() as stack:
            line = None
            if not quiet:
                line = stack.enter_context(ProgressLine(err_console, devices=len(model.sims)))
            if workers > 1:
                report = run_workers(
                    plan, broker, workers=workers, qos=qos, offline_on_stop=offline,
                    on_progress=line,
                )
            else:
                publisher = stack.enter_context(broker.publisher(0))
                report = run_fleet(
                    model, publisher, qos=qos, limits=plan.limits, offline_on_stop=offline,
                    on_progress=line,
                )
    except (PublishError, WorkerError) as exc:
        raise common.UserError(str(exc)) from None
    console.print(render_stats(report.stats, len(model.sims)))
    console.print(
        f"stopped: {report.stopped.value}; {report.offline_sent:,} offline status(es) published"
    )


def _dry_run(plan: FleetPlan, model: FleetModel, *, qos: int, offline: bool, out: Path) -> None:
    if not plan.has_end():
        raise common.UserError(
            "a dry run needs an end: --duration, --messages, the scenario's [fleet] until, "
            "or --no-regular"
        )
    sent, report = dry_run(model, limits=plan.limits, offline_on_stop=offline)
    if str(out) == "-":
        write_jsonl(sent, sys.stdout.buffer, qos=qos)
        sys.stdout.flush()
    else:
        with out.open("wb") as handle:
            write_jsonl(sent, handle, qos=qos)
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(Counter(o.kind.value for o in sent).items()))
    scripted = sum(o.step is not None for o in sent)
    err_console.print(
        f"dry run: {len(sent):,} messages ({kinds}; scripted {scripted:,}) to simulated "
        f"+{model.now:.0f} s; stopped: {report.stopped.value}"
        + ("" if str(out) == "-" else f" → {out}")
    )


def _configured_topic_root() -> str:
    return common.settings().mqtt.topic_root


def _parse_start(value: str | None) -> float | None:
    """``--start``: ISO 8601 with a zone, or epoch seconds."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise common.UserError(
            f"--start {value!r}: expected ISO 8601 (2026-11-22T08:00:00+08:00) or epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        raise common.UserError(f"--start {value!r} needs a time zone, e.g. +08:00")
    return parsed.timestamp()


def _inputs(
    county_dir: Path | None, devices: Path | None, grids: Path | None, *, required: bool
) -> tuple[Path | None, Path | None]:
    if county_dir is not None:
        if devices is not None or grids is not None:
            raise common.UserError("give --county-dir or --devices/--grids, not both")
        try:
            files = find_county_files(county_dir)
        except FileNotFoundError as exc:
            raise common.UserError(str(exc)) from None
        return files.devices[0], files.grids
    if devices is None and required:
        raise common.UserError(
            "give --county-dir DIR or --devices FILE (or a --scenario with devices)"
        )
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
