"""Power snapshots and the protocol every power source implements."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class PowerSnapshot:
    plugged: bool  # on AC (a machine without a battery is always on AC)
    percent: float | None = None  # battery charge, None without a battery
    secs_left: int | None = None  # None when unknown or unlimited
    battery_saver: bool = False  # the OS asks to save power (Windows battery saver, Linux low-power)
    has_battery: bool = True
    cpu_percent: float = 0.0  # whole machine, 0-100
    ram_available_mb: float = 0.0
    ram_percent: float = 0.0  # used
    at: float = field(default_factory=time.time)
    source: str = "psutil"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PowerSource(Protocol):
    name: str

    def read(self) -> PowerSnapshot:
        """Blocking; called on the sampler thread only."""
        ...
