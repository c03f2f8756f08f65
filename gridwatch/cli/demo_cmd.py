"""``gridwatch demo``: gridwatch on embedded defaults with a simulated county reporting to it.

The county (grids, members, ~900 sensors and cameras, patrol tags, resources) is generated
once under the data dir and imported; its fleet publishes over MQTT with time compressed,
plus the example scenario (fires, a leak ramp, a burst pipe, a silent device, a garbage
payload) replayed every cycle, and the RTSP simulator serves its cameras.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer

import simulators
from devices import registry_store
from devices.grids import load_grids
from devices.messages import Kind
from devices.resource_store import import_resource_file
from gridwatch.cli import common
from gridwatch.cli.run_cmd import serve
from gridwatch.endpoints import Endpoints
from gridwatch.logs import setup_logging
from gridwatch.mqtt_publish import BoundedPublisher
from gridwatch.service import Service
from simulators.county import CountySpec, generate_county
from simulators.county_files import CountyFiles, find_county_files, write_county
from simulators.fleet import FleetConfig, FleetModel
from simulators.fleet_input import load_devices
from simulators.fleet_runner import RunLimits, run_fleet
from simulators.patrol_rounds import rounds
from simulators.rtsp_control import DEFAULT_PORT
from simulators.rtsp_process import RtspSimulator, SimulatorError
from simulators.scenario import load_scenario
from storage.tokens import ADMIN_TOKEN_FILE

# Devices report more often than in the field (electrical every 5 min, smoke every few
# hours) so that the console is lively at real speed; values follow real time.
DEMO_INTERVALS = {
    ("electrical_fire_monitor", Kind.TELEMETRY): 15.0,
    ("water_pressure_sensor", Kind.TELEMETRY): 15.0,
    ("smoke_detector", Kind.HEARTBEAT): 60.0,
}

DEMO_SCENE = "simulators.scenes:demo"
EXAMPLE_SCENARIO = Path(simulators.__file__).parent / "scenarios" / "example.toml"


def county_files(data_dir: Path, seed: int) -> CountyFiles:
    where = data_dir / "demo-county"
    if (where / "grids.geojson").exists():
        return find_county_files(where)
    return write_county(generate_county(CountySpec(seed=seed)), where)


def demo(
    speed: Annotated[
        float,
        typer.Option(
            help="Simulated seconds per real second (above 1 the daily cycles and "
            "trends run faster than real devices, which detectors notice)."
        ),
    ] = 1.0,
    rate: Annotated[float, typer.Option(help="Most device messages per second.")] = 2000.0,
    seed: Annotated[int, typer.Option(help="Seed of the generated county.")] = 2026,
    cameras: Annotated[
        bool,
        typer.Option(
            help="Serve the county's cameras as simulated RTSP streams on 127.0.0.1:8554 "
            "(people crossing a zone, lights, rain, and a fault on every fourth camera)."
        ),
    ] = True,
) -> None:
    """Run gridwatch with a simulated county on embedded defaults (Ctrl-C to stop)."""
    settings = common.settings()
    setup_logging(
        "WARNING" if settings.log.level == "INFO" else settings.log.level, settings.log.format
    )
    data_dir = Path(settings.data_dir)
    files = county_files(data_dir, seed)
    stop_fleet = threading.Event()

    async def on_ready(svc: Service, endpoints: Endpoints) -> None:
        async with await psycopg.AsyncConnection.connect(endpoints.db_conninfo) as conn:
            grids = await registry_store.import_grid_file(conn, files.grids)
            await conn.commit()
            devices = await registry_store.import_device_file(conn, files.devices[0])
            await conn.commit()
            if files.resources is not None:
                await import_resource_file(conn, files.resources)
                await conn.commit()
        await svc.reload_registry()
        typer.echo(
            f"gridwatch demo: {grids.counts.inserted + grids.counts.unchanged} grids, "
            f"{devices.counts.inserted + devices.counts.unchanged} devices; "
            f"http {svc.http_url}  mqtt {endpoints.mqtt_url}  (Ctrl-C to stop)",
            err=True,
        )
        typer.echo(console_banner(svc.http_url, data_dir), err=True)
        threading.Thread(
            target=_fleet,
            args=(endpoints.mqtt_url, files, speed, rate, seed, stop_fleet),
            name="demo-fleet",
            daemon=True,
        ).start()
        threading.Thread(
            target=_patrols,
            args=(endpoints.mqtt_url, files, seed, stop_fleet),
            name="demo-patrols",
            daemon=True,
        ).start()

    simulator = _start_cameras(files) if cameras else None
    try:
        serve(settings, on_ready)
    finally:
        stop_fleet.set()
        if simulator is not None:
            simulator.stop()


def _start_cameras(files: CountyFiles) -> RtspSimulator | None:
    """The county's cameras (``rtsp://127.0.0.1:8554/cam-NNN``) as simulated streams; the
    demo goes on without them when they cannot start (say, the port is taken)."""
    count = sum(1 for d in load_devices(files.devices[0]) if d.type == "camera")
    if not count:
        return None
    simulator = RtspSimulator(
        cameras=count, width=640, height=360, fps=10, port=DEFAULT_PORT, scene=DEMO_SCENE
    )
    try:
        simulator.start()
    except SimulatorError as exc:
        typer.echo(f"gridwatch demo: no simulated cameras ({exc})", err=True)
        return None
    typer.echo(
        f"gridwatch demo: {count} simulated cameras on rtsp://127.0.0.1:{DEFAULT_PORT}/", err=True
    )
    return simulator


def console_banner(http_url: str, data_dir: Path) -> str:
    """Where the operator console is and the admin token to sign in with (kept in the data
    dir, so it is shown on every start, not only the first)."""
    token_file = data_dir.resolve() / ADMIN_TOKEN_FILE
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    shown = token or f"(see {token_file}, or `gridwatch tokens create --role admin --scope '*'`)"
    return f"gridwatch demo: operator console {http_url}/  admin token: {shown}"


def _patrols(url: str, files: CountyFiles, seed: int, stop: threading.Event) -> None:
    """Grid workers' rounds at real time: each tag scanned in most of its periods, a few
    missed, a few finding a hazard (simulators.patrol_rounds)."""
    tags = [d for d in load_devices(files.devices[0]) if d.type == "patrol_tag"]
    if not tags:
        return
    workers = {
        g.code: m.id
        for g in load_grids(files.grids).grids
        for m in g.members[:1]
        if m.role.value == "grid_member"
    }
    start = time.time()
    with BoundedPublisher(url, client_id="gridwatch-demo-patrols") as publisher:
        for due in rounds(tags, workers, start, start + 7 * 86400, seed=seed):
            if stop.wait(max(0.0, due.at - time.time())):
                return
            publisher.publish(f"gridwatch/v1/up/{due.tag_id}/event", due.payload())


def _fleet(
    url: str, files: CountyFiles, speed: float, rate: float, seed: int, stop: threading.Event
) -> None:
    """Publish the county's traffic, replaying the example scenario each time it ends."""
    devices = load_devices(files.devices[0])
    cycle = 0
    with BoundedPublisher(url, client_id="gridwatch-demo-fleet") as publisher:
        while not stop.is_set():
            config = FleetConfig(
                start_ts=time.time(), speed=speed, seed=seed + cycle, intervals=DEMO_INTERVALS
            )
            model = FleetModel(devices, config)
            scenario = load_scenario(EXAMPLE_SCENARIO)
            scenario.install(model)
            duration = scenario.ends_at() / speed + 30.0
            run_fleet(
                model,
                publisher,
                limits=RunLimits(rate=rate, duration=duration),
                stop=stop,
                offline_on_stop=False,
            )
            cycle += 1
