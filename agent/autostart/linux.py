"""Linux: a spec-conformant XDG autostart entry, $XDG_CONFIG_HOME/autostart/powergate.desktop."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from agent.autostart.base import DISABLED, DISABLED_BY_USER, ENABLED, AutostartState, launch_command
from agent.platform.paths import assets_dir

DESKTOP_NAME = "powergate.desktop"
ICON = assets_dir() / "icons" / "powergate-64.png"


def autostart_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart"


def desktop_entry(command: list[str], icon: Path | None = None) -> str:
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=powergate",
        "GenericName=Local AI gateway",
        "Comment=Fast, battery-aware local endpoint for AI coding tools",
        f"Exec={' '.join(shlex.quote(c) for c in command)}",
        "Terminal=false",
        "Categories=Development;",
        "X-GNOME-Autostart-enabled=true",
        "X-GNOME-Autostart-Delay=5",
    ]
    if icon is not None and icon.exists():
        lines.append(f"Icon={icon}")
    return "\n".join(lines) + "\n"


def parse_entry(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif "=" in line and section == "[Desktop Entry]":
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class LinuxAutostart:
    def __init__(self, directory: Path | None = None, command: list[str] | None = None) -> None:
        self.dir = directory or autostart_dir()
        self.path = self.dir / DESKTOP_NAME
        self.command = command or launch_command()

    def enable(self) -> AutostartState:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(desktop_entry(self.command, ICON))
        os.replace(tmp, self.path)
        return self.status()

    def disable(self) -> AutostartState:
        self.path.unlink(missing_ok=True)
        return self.status()

    def status(self) -> AutostartState:
        if not self.path.exists():
            return AutostartState(DISABLED, f"no {self.path}")
        entry = parse_entry(self.path.read_text(errors="replace"))
        if (
            entry.get("Hidden", "false").lower() == "true"
            or entry.get("X-GNOME-Autostart-enabled", "true").lower() == "false"
        ):
            return AutostartState(DISABLED_BY_USER, f"{self.path} is switched off in the session settings")
        return AutostartState(ENABLED, f"{self.path} runs: {entry.get('Exec', '?')}")
