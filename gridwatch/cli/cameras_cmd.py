"""``gridwatch simulate cameras``: simulated RTSP cameras to pull, as a real camera is pulled.

Serves ``cam-001`` … ``cam-NNN`` on ``rtsp://127.0.0.1:8554/``, where the simulated
county's cameras point, until Ctrl-C. Outages are scripted with ``--outage``.

Register with ``simulate_cmd.app.add_typer(cameras_cmd.app, name="cameras")`` (or, the
same command without a group, ``simulate_cmd.app.command("cameras")(cameras_cmd.cameras)``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gridwatch.cli import common
from simulators.rtsp_control import DEFAULT_PORT, ControlError, OutagePlan
from simulators.rtsp_process import RtspSimulator, SimulatorError

app = typer.Typer(help="Simulated RTSP cameras.", invoke_without_command=True)
console = Console()


@app.callback(invoke_without_command=True)
def cameras(
    count: Annotated[int, typer.Option("--count", "-n", help="Cameras cam-001 … cam-NNN.")] = 6,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="RTSP port (0: any free one).")] = DEFAULT_PORT,
    width: Annotated[int, typer.Option(help="Picture width.")] = 1280,
    height: Annotated[int, typer.Option(help="Picture height.")] = 720,
    fps: Annotated[int, typer.Option(help="Frames a second.")] = 15,
    bitrate: Annotated[int, typer.Option(help="H.264 kbit/s per camera.")] = 2048,
    scene: Annotated[
        str | None,
        typer.Option(
            help="module:callable making each camera's scene, called as "
            "callable(name, width, height, index) (default: a moving box)."
        ),
    ] = None,
    outage: Annotated[
        list[str] | None,
        typer.Option(
            "--outage",
            help="NAME@START+DURATION, optionally /EVERY and :stall (default :refuse), "
            "e.g. cam-002@30+10 or cam-001@20+5/60:stall (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve simulated cameras until Ctrl-C (about 10 % of a core per 720p camera)."""
    if count < 1:
        raise common.UserError("--count must be at least 1")
    try:
        plans = [OutagePlan.parse(text) for text in outage or []]
    except ControlError as exc:
        raise common.UserError(str(exc)) from None
    simulator = RtspSimulator(
        cameras=count,
        width=width,
        height=height,
        fps=fps,
        bitrate_kbps=bitrate,
        host=host,
        port=port,
        scene=scene,
        outages=plans,
    )
    try:
        simulator.start()
    except SimulatorError as exc:
        raise common.UserError(str(exc)) from None
    try:
        table = Table("camera", "url", title=f"{count} simulated cameras, {width}x{height}@{fps}")
        for name, url in simulator.urls.items():
            table.add_row(name, url)
        console.print(table)
        for plan in plans:
            console.print(f"outage planned: {plan}")
        console.print("Ctrl-C stops")
        seen = len(simulator.events)
        while True:
            for event in simulator.events_after(seen, timeout=3600.0):
                seen += 1
                details = " ".join(
                    f"{k}={v}" for k, v in event.items() if k not in ("event", "camera")
                )
                console.print(f"{event.get('camera', '')} {event.get('event')} {details}")
    except KeyboardInterrupt:
        pass
    except SimulatorError as exc:
        raise common.UserError(str(exc)) from None
    finally:
        simulator.stop()
