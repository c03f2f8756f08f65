"""Device clocks: how far each device's idea of the time is from the true time.

In the field every device's ``ts`` is a little off (an RTC without network time drifts
seconds a day), and a few are off by hours (a reset clock, a wrong time zone): docs/domain.md.
A device's offset is drawn once from its own random stream, so the same fleet and seed give
the same clocks; a scenario can set a device's clock to a given offset for a while (a clock
that jumps after a reboot). Ingest accepts a late clock and stores the reading at the wrong
time; a clock ahead by more than ``ingest.max_future_skew_s`` is dead-lettered as
``future_timestamp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class ClockModel:
    """How wrong device clocks are across a fleet (offsets in wall seconds)."""

    sigma_s: float = 2.0  # every device: offset ~ N(0, sigma)
    wrong_share: float = 0.005  # devices whose clock is off by hours, either way
    wrong_min_s: float = 1 * HOUR_S
    wrong_max_s: float = 6 * HOUR_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma_s) and self.sigma_s >= 0):
            raise ValueError(f"clock sigma must be >= 0 seconds, got {self.sigma_s}")
        if not 0.0 <= self.wrong_share <= 1.0:
            raise ValueError(f"clock wrong share must be 0–1, got {self.wrong_share}")
        if not 0 <= self.wrong_min_s <= self.wrong_max_s or not math.isfinite(self.wrong_max_s):
            raise ValueError(
                f"clock wrong range must be 0 <= min <= max, got "
                f"{self.wrong_min_s}..{self.wrong_max_s} s"
            )

    def offset(self, seed: int, device_id: str) -> float:
        """The device's clock offset in seconds (positive: its clock is ahead).

        Drawn from a stream of its own so that adding clocks to a fleet leaves the values
        every device reports unchanged.
        """
        rng = Random(f"{seed}:{device_id}:clock")
        if self.wrong_share and rng.random() < self.wrong_share:
            hours = rng.uniform(self.wrong_min_s, self.wrong_max_s)
            return round(hours if rng.random() < 0.5 else -hours, 3)
        return round(rng.gauss(0.0, self.sigma_s), 3) if self.sigma_s else 0.0


@dataclass(frozen=True, slots=True)
class ClockJump:
    """From ``start`` to ``until`` (simulated seconds, ``until`` excluded) the device's clock
    is off by ``offset_s`` instead of its usual offset."""

    start: float
    until: float
    offset_s: float


class DeviceClock:
    """One device's offset at a simulated instant: its usual one, or the latest jump."""

    __slots__ = ("base_s", "jumps")

    def __init__(self, base_s: float = 0.0) -> None:
        self.base_s = base_s
        self.jumps: list[ClockJump] = []

    def offset_at(self, t: float) -> float:
        if not self.jumps:
            return self.base_s
        chosen: ClockJump | None = None
        for jump in self.jumps:  # in the order added: a later one wins a tie
            if jump.start <= t < jump.until and (chosen is None or jump.start >= chosen.start):
                chosen = jump
        return self.base_s if chosen is None else chosen.offset_s
