"""What every start-at-login backend offers, and the command it starts."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ENABLED = "enabled"
DISABLED = "disabled"  # not set up
DISABLED_BY_USER = "disabled-by-user"  # set up, but switched off in the OS (Task Manager)


@dataclass(frozen=True)
class AutostartState:
    state: str
    detail: str

    @property
    def enabled(self) -> bool:
        return self.state == ENABLED


class Autostart(Protocol):
    def enable(self) -> AutostartState: ...

    def disable(self) -> AutostartState: ...

    def status(self) -> AutostartState: ...


def launch_command(windowed: bool = True) -> list[str]:
    """The command that starts the agent quietly into the tray.

    A frozen build (PyInstaller) runs itself; otherwise the interpreter runs
    `-m agent run`, with pythonw.exe on Windows so that no console window opens."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "run"]
    exe = Path(sys.executable)
    if sys.platform == "win32" and windowed:
        pyw = exe.with_name("pythonw.exe")
        if pyw.exists():
            exe = pyw
    elif sys.platform != "win32":
        found = shutil.which("powergate")
        if found and Path(found).resolve().parent == exe.resolve().parent:
            return [found, "run"]
    return [str(exe), "-m", "agent", "run"]
