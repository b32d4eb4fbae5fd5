"""Power from psutil: battery, AC, CPU and RAM, plus the OS battery-saver state.

psutil's cpu_percent(interval=None) measures since its previous call *on the
same thread*: this source must only ever be read from the one sampler thread.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.power.base import PowerSnapshot
from agent.power.windows import windows_battery_saver

log = logging.getLogger(__name__)

MB = 1024 * 1024
LINUX_PLATFORM_PROFILE = Path("/sys/firmware/acpi/platform_profile")


def _secs_left(value: Any) -> int | None:
    # psutil's sentinels: POWER_TIME_UNKNOWN (-1) and POWER_TIME_UNLIMITED (-2).
    if value in (psutil.POWER_TIME_UNKNOWN, psutil.POWER_TIME_UNLIMITED) or value is None:
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def linux_low_power(path: Path = LINUX_PLATFORM_PROFILE) -> bool:
    try:
        return path.read_text().strip() == "low-power"
    except OSError:
        return False


def os_battery_saver() -> bool:
    if sys.platform == "win32":
        return bool(windows_battery_saver())
    if sys.platform.startswith("linux"):
        return linux_low_power()
    return False


class PsutilSource:
    name = "psutil"

    def __init__(
        self,
        battery: Callable[[], Any] = psutil.sensors_battery,
        battery_saver: Callable[[], bool] = os_battery_saver,
    ) -> None:
        self._battery = battery
        self._battery_saver = battery_saver
        self._warned = False
        psutil.cpu_percent(interval=None)  # prime the baseline (first call returns 0.0)

    def read_battery(self) -> tuple[bool, float | None, int | None, bool]:
        """(plugged, percent, secs_left, has_battery) with psutil's quirks handled."""
        try:
            b = self._battery()
        except (OSError, RuntimeError, NotImplementedError, AttributeError) as exc:
            # e.g. no /sys/class/power_supply in a container or VM
            if not self._warned:
                log.info("no battery information (%s): treating this machine as on AC", type(exc).__name__)
                self._warned = True
            return True, None, None, False
        if b is None:  # a desktop: no battery, always on AC
            return True, None, None, False
        secs = _secs_left(getattr(b, "secsleft", None))
        plugged = getattr(b, "power_plugged", None)
        if plugged is None:
            # Unknown AC state: an unlimited time left means AC; otherwise assume battery,
            # the side that protects the user.
            plugged = getattr(b, "secsleft", None) == psutil.POWER_TIME_UNLIMITED
        percent = getattr(b, "percent", None)
        return bool(plugged), (float(percent) if percent is not None else None), secs, True

    def read(self) -> PowerSnapshot:
        plugged, percent, secs, has_battery = self.read_battery()
        try:
            saver = bool(self._battery_saver())
        except Exception:  # a broken OS query must not stop sampling
            saver = False
        vm = psutil.virtual_memory()
        return PowerSnapshot(
            plugged=plugged,
            percent=percent,
            secs_left=secs,
            battery_saver=saver,
            has_battery=has_battery,
            cpu_percent=psutil.cpu_percent(interval=None),
            ram_available_mb=vm.available / MB,
            ram_percent=vm.percent,
            source=self.name,
        )
