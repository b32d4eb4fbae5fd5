"""Start at login: Windows Run key, Linux XDG autostart, macOS LaunchAgent."""

from __future__ import annotations

import sys

from agent.autostart.base import Autostart


def autostart_for_platform() -> Autostart:
    if sys.platform == "win32":
        from agent.autostart.windows import WindowsAutostart

        return WindowsAutostart()
    if sys.platform == "darwin":
        from agent.autostart.macos import MacAutostart

        return MacAutostart()
    from agent.autostart.linux import LinuxAutostart

    return LinuxAutostart()


__all__ = ["Autostart", "autostart_for_platform"]
