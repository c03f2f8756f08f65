"""``gridwatch run``: the service, on configured or embedded broker and database."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer

from gridwatch.cli import common
from gridwatch.embedded.binaries import MissingBinary
from gridwatch.endpoints import service_endpoints
from gridwatch.instance import AlreadyRunning, InstanceInfo, InstanceLock, write_info
from gridwatch.logs import setup_logging
from gridwatch.service import Service, install_signal_handlers


def run() -> None:
    """Run gridwatch until SIGINT/SIGTERM. Without broker/database URLs it starts its own
    mosquitto and PostgreSQL under the data dir."""
    settings = common.settings()
    setup_logging(settings.log.level, settings.log.format)
    data_dir = Path(settings.data_dir)
    lock = InstanceLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        raise common.UserError(str(exc)) from None
    try:
        with service_endpoints(settings) as endpoints:
            service = Service(settings, endpoints)

            def announce(svc: Service) -> None:
                write_info(
                    data_dir,
                    InstanceInfo(
                        pid=os.getpid(),
                        mqtt_url=endpoints.mqtt_url,
                        db_conninfo=endpoints.db_conninfo,
                        http_url=svc.http_url,
                    ),
                )
                typer.echo(
                    f"gridwatch is running: http {svc.http_url}  mqtt {endpoints.mqtt_url}"
                    "  (Ctrl-C to stop)",
                    err=True,
                )

            async def main() -> None:
                install_signal_handlers(service)
                await service.run(on_ready=announce)

            asyncio.run(main())
    except MissingBinary as exc:
        raise common.UserError(str(exc)) from None
    except OSError as exc:
        raise common.UserError(f"cannot start: {exc}") from None
    finally:
        lock.release()
