"""Mode `auto`: from power snapshots to a profile, with hysteresis so it never flaps.

- Power source first, and at once: on AC -> performance; on battery -> balanced;
  OS battery saver on, or battery at or below `saver_enter` -> battery-saver,
  left only at `saver_leave` or above (separate levels: no flapping at 20%).
- Load second, with dwell times because CPU readings are noisy: on AC with the
  CPU above `cpu_high` for `cpu_dwell_s` -> balanced, back when it has been
  below `cpu_low` for `cpu_dwell_s`.
- Memory pressure (available RAM below `ram_low_mb`, left above `ram_ok_mb`) is
  reported beside the profile: the runtime shrinks the memory tier and asks
  Ollama to unload idle models.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.power.base import PowerSnapshot
from agent.profiles import BALANCED, BATTERY_SAVER, PERFORMANCE


@dataclass(frozen=True)
class PolicyConfig:
    saver_enter: float = 20.0  # battery percent
    saver_leave: float = 25.0
    cpu_high: float = 85.0  # percent of all cores
    cpu_low: float = 60.0
    cpu_dwell_s: float = 60.0
    ram_low_mb: float = 1024.0
    ram_ok_mb: float = 1536.0


@dataclass(frozen=True)
class Decision:
    profile: str
    reason: str
    power_changed: bool  # charger plugged/unplugged or OS battery saver toggled since the last sample
    memory_pressure: bool


class AutoPolicy:
    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.on_ac: bool | None = None
        self.os_saver: bool | None = None
        self.saver = False
        self.cpu_busy = False
        self._high_since: float | None = None
        self._low_since: float | None = None
        self.memory_pressure = False

    def update(self, snap: PowerSnapshot, now: float | None = None) -> Decision:
        c = self.config
        t = snap.at if now is None else now
        power_changed = (self.on_ac is not None and snap.plugged != self.on_ac) or (
            self.os_saver is not None and snap.battery_saver != self.os_saver
        )
        self.on_ac = snap.plugged
        self.os_saver = snap.battery_saver

        # battery level, with separate enter/leave levels
        if snap.plugged or snap.percent is None:
            self.saver = False
        elif not self.saver and snap.percent <= c.saver_enter:
            self.saver = True
        elif self.saver and snap.percent >= c.saver_leave:
            self.saver = False

        # sustained CPU load, with dwell times
        if snap.cpu_percent >= c.cpu_high:
            self._low_since = None
            self._high_since = self._high_since if self._high_since is not None else t
            if not self.cpu_busy and t - self._high_since >= c.cpu_dwell_s:
                self.cpu_busy = True
        elif snap.cpu_percent <= c.cpu_low:
            self._high_since = None
            self._low_since = self._low_since if self._low_since is not None else t
            if self.cpu_busy and t - self._low_since >= c.cpu_dwell_s:
                self.cpu_busy = False
        else:
            self._high_since = self._low_since = None

        if snap.ram_available_mb and snap.ram_available_mb < c.ram_low_mb:
            self.memory_pressure = True
        elif snap.ram_available_mb >= c.ram_ok_mb:
            self.memory_pressure = False

        if snap.battery_saver:
            profile, reason = BATTERY_SAVER, "OS battery saver is on"
        elif self.saver:
            profile, reason = (
                BATTERY_SAVER,
                f"battery at {snap.percent:.0f}% (saver below {c.saver_enter:.0f}%, until {c.saver_leave:.0f}%)",
            )
        elif snap.plugged:
            if self.cpu_busy:
                profile, reason = BALANCED, f"on AC, CPU above {c.cpu_high:.0f}% for {c.cpu_dwell_s:.0f} s"
            else:
                profile, reason = PERFORMANCE, "on AC" if snap.has_battery else "no battery (desktop)"
        else:
            profile, reason = BALANCED, "on battery"
        return Decision(profile, reason, power_changed, self.memory_pressure)
