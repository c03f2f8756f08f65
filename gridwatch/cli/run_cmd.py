"""``gridwatch run``: the service, on configured or embedded broker and database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import typer

from gridwatch.broker_access import BrokerAccessError
from gridwatch.cli import common
from gridwatch.config import Settings
from gridwatch.embedded.errors import EmbeddedServiceError
from gridwatch.endpoints import Endpoints, service_endpoints
from gridwatch.instance import AlreadyRunning, InstanceInfo, InstanceLock, write_info
from gridwatch.logs import setup_logging
from gridwatch.service import Service, install_signal_handlers

OnReady = Callable[[Service, Endpoints], Awaitable[None] | None]


def serve(settings: Settings, on_ready: OnReady | None = None) -> None:
    """Hold the data dir, start what is not configured, run the service until a signal, and
    stop everything in order; what a user can fix becomes a one-line error."""
    data_dir = Path(settings.data_dir)
    token_file = data_dir.resolve() / "admin-token"
    lock = InstanceLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        raise common.UserError(str(exc)) from None
    try:
        with service_endpoints(settings) as endpoints:
            service = Service(settings, endpoints)

            async def ready(svc: Service) -> None:
                info = InstanceInfo(
                    os.getpid(), endpoints.mqtt_url, endpoints.db_conninfo, svc.http_url
                )
                write_info(data_dir, info)
                if svc.admin_token:
                    typer.echo(
                        "first start: admin API token (also in"
                        f" {token_file}): {svc.admin_token}",
                        err=True,
                    )
                if on_ready is not None:
                    result = on_ready(svc, endpoints)
                    if result is not None:
                        await result

            async def main() -> None:
                install_signal_handlers(service)
                await service.run(on_ready=ready)

            asyncio.run(main())
    except (EmbeddedServiceError, BrokerAccessError) as exc:
        raise common.UserError(str(exc)) from None
    except psycopg.OperationalError as exc:
        # Only at start: once running, a lost database is spooled through (ingest/spool.py).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise common.UserError(f"cannot start: the database is unreachable ({first})") from None
    except OSError as exc:
        raise common.UserError(f"cannot start: {exc}") from None
    finally:
        lock.release()


def run() -> None:
    """Run gridwatch until SIGINT/SIGTERM. Without broker/database URLs it starts its own
    mosquitto and PostgreSQL under the data dir."""
    settings = common.settings()
    setup_logging(settings.log.level, settings.log.format)

    def announce(svc: Service, endpoints: Endpoints) -> None:
        typer.echo(
            f"gridwatch is running: http {svc.http_url}  mqtt {endpoints.mqtt_url}"
            "  (Ctrl-C to stop)",
            err=True,
        )

    serve(settings, announce)
