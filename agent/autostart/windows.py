"""Windows: HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run, and Task Manager's
StartupApproved switch, which the user's choice lives in and which we never override."""

from __future__ import annotations

import subprocess
from typing import Any, Protocol

from agent.autostart.base import DISABLED, DISABLED_BY_USER, ENABLED, AutostartState, launch_command

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
VALUE_NAME = "powergate"


class Registry(Protocol):
    def get(self, key: str, name: str) -> Any: ...

    def set_string(self, key: str, name: str, value: str) -> None: ...

    def delete(self, key: str, name: str) -> None: ...


class WinReg:
    """HKEY_CURRENT_USER through winreg (no admin rights needed)."""

    def __init__(self) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        self.winreg = winreg

    def get(self, key: str, name: str) -> Any:
        w = self.winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, key) as k:
                return w.QueryValueEx(k, name)[0]
        except FileNotFoundError:
            return None

    def set_string(self, key: str, name: str, value: str) -> None:
        w = self.winreg
        with w.CreateKey(w.HKEY_CURRENT_USER, key) as k:
            w.SetValueEx(k, name, 0, w.REG_SZ, value)

    def delete(self, key: str, name: str) -> None:
        w = self.winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, key, 0, w.KEY_SET_VALUE) as k:
                w.DeleteValue(k, name)
        except FileNotFoundError:
            pass


def approved_disabled(value: Any) -> bool:
    # Task Manager writes 12 bytes: the first is even (02/06) when enabled, odd (03/07) when
    # the user switched the entry off.
    return isinstance(value, (bytes, bytearray)) and len(value) > 0 and value[0] % 2 == 1


class WindowsAutostart:
    def __init__(self, registry: Registry | None = None, command: list[str] | None = None) -> None:
        self.reg = registry or WinReg()
        self.command = subprocess.list2cmdline(command or launch_command(windowed=True))

    def enable(self) -> AutostartState:
        self.reg.set_string(RUN_KEY, VALUE_NAME, self.command)
        return self.status()

    def disable(self) -> AutostartState:
        self.reg.delete(RUN_KEY, VALUE_NAME)
        return self.status()

    def status(self) -> AutostartState:
        value = self.reg.get(RUN_KEY, VALUE_NAME)
        if not value:
            return AutostartState(DISABLED, "no Run entry")
        if approved_disabled(self.reg.get(APPROVED_KEY, VALUE_NAME)):
            return AutostartState(DISABLED_BY_USER, "switched off in Task Manager > Startup apps; switch it on there")
        return AutostartState(ENABLED, f"Run entry: {value}")
