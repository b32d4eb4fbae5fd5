"""macOS: a LaunchAgent plist in ~/Library/LaunchAgents, run at login."""

from __future__ import annotations

import plistlib
from pathlib import Path

from agent.autostart.base import DISABLED, DISABLED_BY_USER, ENABLED, AutostartState, launch_command

LABEL = "com.powergate.agent"


class MacAutostart:
    def __init__(self, home: Path | None = None, command: list[str] | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        self.command = command or launch_command()

    def enable(self) -> AutostartState:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "Label": LABEL,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
            "StandardOutPath": "/dev/null",
            "StandardErrorPath": "/dev/null",
        }
        with self.path.open("wb") as fh:
            plistlib.dump(doc, fh)
        return self.status()

    def disable(self) -> AutostartState:
        self.path.unlink(missing_ok=True)
        return self.status()

    def status(self) -> AutostartState:
        if not self.path.exists():
            return AutostartState(DISABLED, f"no {self.path}")
        with self.path.open("rb") as fh:
            doc = plistlib.load(fh)
        if doc.get("Disabled") is True or doc.get("RunAtLoad") is False:
            return AutostartState(DISABLED_BY_USER, f"{self.path} is disabled")
        return AutostartState(ENABLED, f"{self.path} runs: {' '.join(doc.get('ProgramArguments', []))}")
