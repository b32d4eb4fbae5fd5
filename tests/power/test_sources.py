"""Power sources: psutil's quirks, Windows battery saver, the JSON file source."""

from __future__ import annotations

import json
import threading
from collections import namedtuple
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.power.base import PowerSnapshot
from agent.power.file_source import FileSource
from agent.power.psutil_source import PsutilSource, linux_low_power
from agent.power.windows import SYSTEM_POWER_STATUS, windows_battery_saver

Battery = namedtuple("Battery", "percent secsleft power_plugged")


def source_with(battery: Any, saver: bool = False) -> PsutilSource:
    def read() -> Any:
        if isinstance(battery, Exception):
            raise battery
        return battery

    return PsutilSource(battery=read, battery_saver=lambda: saver)


@pytest.fixture(params=["psutil", "file"])
def on_battery_source(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The same situation (on battery at 42%, saver on) from each source."""
    if request.param == "psutil":
        return source_with(Battery(42, 5400, False), saver=True)
    p = tmp_path / "power.json"
    p.write_text(json.dumps({"percent": 42, "plugged": False, "battery_saver": True}))
    return FileSource(p)


def test_every_source_reports_the_same_snapshot(on_battery_source: Any) -> None:
    snap = on_battery_source.read()
    assert isinstance(snap, PowerSnapshot)
    assert snap.plugged is False and snap.percent == 42 and snap.battery_saver is True and snap.has_battery
    assert 0 <= snap.cpu_percent <= 100 and snap.ram_available_mb > 0


@pytest.mark.parametrize(
    ("battery", "plugged", "percent", "secs", "has_battery"),
    [
        (None, True, None, None, False),  # desktop: always on AC
        (FileNotFoundError("/sys/class/power_supply"), True, None, None, False),
        (Battery(80, psutil.POWER_TIME_UNLIMITED, True), True, 80, None, True),
        (Battery(80, psutil.POWER_TIME_UNKNOWN, False), False, 80, None, True),
        (Battery(55, 3600, False), False, 55, 3600, True),
        (Battery(90, psutil.POWER_TIME_UNLIMITED, None), True, 90, None, True),  # unknown AC, unlimited time
        (Battery(60, 1200, None), False, 60, 1200, True),  # unknown AC, draining
    ],
)
def test_psutil_quirks(battery: Any, plugged: bool, percent: float | None, secs: int | None, has_battery: bool) -> None:
    snap = source_with(battery).read()
    assert (snap.plugged, snap.percent, snap.secs_left, snap.has_battery) == (plugged, percent, secs, has_battery)


def test_cpu_is_read_on_one_thread_with_a_baseline() -> None:
    src = source_with(None)
    values = []
    t = threading.Thread(target=lambda: values.extend(src.read().cpu_percent for _ in range(3)))
    t.start()
    t.join()
    assert all(0.0 <= v <= 100.0 for v in values)


def test_windows_battery_saver_through_injected_call() -> None:
    def status(flag: int, ok: int = 1) -> Any:
        def get(st: SYSTEM_POWER_STATUS) -> int:
            st.ACLineStatus = 0
            st.BatteryLifePercent = 50
            st.SystemStatusFlag = flag
            return ok

        return get

    assert windows_battery_saver(status(1)) is True
    assert windows_battery_saver(status(0)) is False
    assert windows_battery_saver(status(1, ok=0)) is None


def test_linux_low_power_profile(tmp_path: Path) -> None:
    p = tmp_path / "platform_profile"
    p.write_text("low-power\n")
    assert linux_low_power(p) is True
    p.write_text("balanced\n")
    assert linux_low_power(p) is False
    assert linux_low_power(tmp_path / "missing") is False


def test_file_source_keeps_last_good_reading(tmp_path: Path) -> None:
    p = tmp_path / "power.json"
    src = FileSource(p)
    first = src.read()
    assert first.plugged is True and first.has_battery is False  # no file yet: a safe default
    p.write_text(json.dumps({"percent": 30, "plugged": False, "cpu_percent": 91, "ram_available_mb": 700}))
    good = src.read()
    assert (good.percent, good.cpu_percent, good.ram_available_mb) == (30, 91, 700)
    p.write_text("{broken")
    assert src.read() == good
    p.write_text(json.dumps({"percent": "lots", "plugged": False}))
    assert src.read() == good
