"""Power from a JSON file: {"percent", "plugged", "battery_saver"} (and optionally
"cpu_percent", "ram_available_mb"). For demos, tests and scripts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psutil

from agent.power.base import PowerSnapshot, PowerSource

log = logging.getLogger(__name__)

MB = 1024 * 1024


class FileSource:
    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._last: PowerSnapshot | None = None
        self._complained = False
        psutil.cpu_percent(interval=None)

    def read(self) -> PowerSnapshot:
        try:
            doc = json.loads(self.path.read_text())
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
            plugged = doc.get("plugged", True)
            percent = doc.get("percent")
            if not isinstance(plugged, bool) or (percent is not None and not isinstance(percent, (int, float))):
                raise ValueError('"plugged" must be true/false and "percent" a number')
            vm = psutil.virtual_memory()
            cpu = doc.get("cpu_percent")
            ram = doc.get("ram_available_mb")
            snap = PowerSnapshot(
                plugged=plugged,
                percent=float(percent) if percent is not None else None,
                battery_saver=bool(doc.get("battery_saver", False)),
                has_battery=percent is not None,
                cpu_percent=float(cpu) if isinstance(cpu, (int, float)) else psutil.cpu_percent(interval=None),
                ram_available_mb=float(ram) if isinstance(ram, (int, float)) else vm.available / MB,
                ram_percent=vm.percent,
                source=f"file:{self.path}",
            )
            self._complained = False
        except (OSError, ValueError) as exc:
            if not self._complained:
                log.warning("power file %s unreadable (%s); keeping the last reading", self.path, exc)
                self._complained = True
            if self._last is not None:
                return self._last
            return PowerSnapshot(plugged=True, has_battery=False, source=f"file:{self.path}")
        self._last = snap
        return snap


def make_source(spec: str) -> PowerSource:
    from agent.power.psutil_source import PsutilSource

    if spec.startswith("file:"):
        return FileSource(spec[5:])
    return PsutilSource()
