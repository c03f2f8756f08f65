"""Embedded services: mosquitto and PostgreSQL run from the distribution's binaries.

For development, tests and single-machine installs, gridwatch can run its own broker and
database as child processes with state under its data directory, instead of needing system
services configured by hand. Production points gridwatch at real services instead.
"""

from gridwatch.embedded.binaries import MissingBinary
from gridwatch.embedded.errors import (
    EmbeddedServiceError,
    PortInUse,
    PrivilegeError,
    ServiceStartError,
)
from gridwatch.embedded.mosquitto import MosquittoBroker
from gridwatch.embedded.postgres import PostgresCluster, StartTimings

__all__ = [
    "EmbeddedServiceError",
    "MissingBinary",
    "MosquittoBroker",
    "PortInUse",
    "PostgresCluster",
    "PrivilegeError",
    "ServiceStartError",
    "StartTimings",
]
