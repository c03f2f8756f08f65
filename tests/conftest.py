"""Session-wide fixtures. The real-service fixtures live in tests/services.py."""

from tests.services import mosquitto_broker, pg_cluster

__all__ = ["mosquitto_broker", "pg_cluster"]
