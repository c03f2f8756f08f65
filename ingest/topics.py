"""Uplink topic grammar: ``{root}/up/{device_id}/{kind}``."""

from __future__ import annotations

from devices.messages import Kind

_KINDS = {kind.value: kind for kind in Kind}


class UplinkTopics:
    """Parses and builds uplink topics under one root, without regexes on the hot path."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self._prefix = f"{self.root}/up/"

    def subscription(self, shared_group: str | None = None) -> str:
        topic = f"{self._prefix}+/+"
        return f"$share/{shared_group}/{topic}" if shared_group else topic

    def parse(self, topic: str) -> tuple[str, Kind] | None:
        """``(device_id, kind)``, or None for a topic that is not a device uplink."""
        if not topic.startswith(self._prefix):
            return None
        device_id, sep, kind = topic[len(self._prefix) :].partition("/")
        if not sep or not device_id or kind not in _KINDS:
            return None
        return device_id, _KINDS[kind]

    def build(self, device_id: str, kind: Kind) -> str:
        return f"{self._prefix}{device_id}/{kind.value}"

    def service_status(self, client_id: str) -> str:
        """Where gridwatch itself says ``online`` (retained) and leaves ``offline`` as its will."""
        return f"{self.root}/service/{client_id}/status"
