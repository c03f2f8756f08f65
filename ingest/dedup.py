"""Drop repeats of ``(device_id, seq)`` seen recently by this worker.

This is the cheap first line; the database's unique key on readings is the one that holds
across restarts and across workers sharing a subscription, so this window only needs to
catch the common case: a device or the broker sending the same message again soon.
"""

from __future__ import annotations

from collections import deque


class SeqDeduper:
    def __init__(self, window: int = 256) -> None:
        self.window = window
        self._seen: dict[str, tuple[set[int], deque[int]]] = {}

    def is_repeat(self, device_id: str, seq: int | None) -> bool:
        """True when this sequence number was seen recently; records it otherwise."""
        if seq is None:
            return False
        entry = self._seen.get(device_id)
        if entry is None:
            entry = (set(), deque())
            self._seen[device_id] = entry
        members, order = entry
        if seq in members:
            return True
        members.add(seq)
        order.append(seq)
        if len(order) > self.window:
            members.discard(order.popleft())
        return False

    def forget(self, device_id: str, seq: int | None) -> None:
        """Undo :meth:`is_repeat`'s record when a message was not kept after all."""
        if seq is None or device_id not in self._seen:
            return
        members, order = self._seen[device_id]
        if seq in members:
            members.discard(seq)
            order.remove(seq)
