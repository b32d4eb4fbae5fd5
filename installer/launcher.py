"""Entry point of the PyInstaller build: `powergate.exe` alone starts the agent."""

from __future__ import annotations

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["run"]))
