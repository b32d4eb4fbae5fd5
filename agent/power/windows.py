"""Windows power state via GetSystemPowerStatus (kernel32), through ctypes.

SystemStatusFlag is 1 while battery saver (Windows 10) / energy saver
(Windows 11) is on. The function to call is injectable so the same logic is
tested on every platform.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any


class SYSTEM_POWER_STATUS(ctypes.Structure):
    _fields_ = [
        ("ACLineStatus", ctypes.c_ubyte),
        ("BatteryFlag", ctypes.c_ubyte),
        ("BatteryLifePercent", ctypes.c_ubyte),
        ("SystemStatusFlag", ctypes.c_ubyte),
        ("BatteryLifeTime", ctypes.c_ulong),
        ("BatteryFullLifeTime", ctypes.c_ulong),
    ]


def _kernel32_get_status(status: Any) -> int:
    return int(ctypes.windll.kernel32.GetSystemPowerStatus(ctypes.byref(status)))  # type: ignore[attr-defined]


def windows_power_status(get_status: Callable[[Any], int] | None = None) -> SYSTEM_POWER_STATUS | None:
    if get_status is None:
        if sys.platform != "win32":
            return None
        get_status = _kernel32_get_status
    status = SYSTEM_POWER_STATUS()
    if not get_status(status):
        return None
    return status


def windows_battery_saver(get_status: Callable[[Any], int] | None = None) -> bool | None:
    """True while battery/energy saver is on; None when it cannot be read."""
    status = windows_power_status(get_status)
    if status is None:
        return None
    return status.SystemStatusFlag == 1
