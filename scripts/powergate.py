#!/usr/bin/env python3
"""Run powergate from this checkout: `python3 scripts/powergate.py run`
(Windows: `py scripts\\powergate.py run`); any powergate command works the same way.

On first use it makes the checkout's own virtualenv and installs powergate into it
(scripts/bootstrap.py: no root, no system pip, no python3-venv needed); later
starts only check a stamp. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import BootstrapError, ensure_installed  # noqa: E402


def main() -> int:
    try:
        python = ensure_installed([])
    except BootstrapError as exc:
        print(f"powergate: {exc}", file=sys.stderr)
        return 1
    cmd = [str(python), "-m", "agent", *sys.argv[1:]]
    if sys.platform != "win32":
        os.execv(cmd[0], cmd)  # the agent gets this process: signals and exit code go straight to it
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
