"""Stop a running powergate before an upgrade or uninstall (run by the installer
with the private virtualenv's Python). Reads agent.json beside the lock, asks the
process to end, waits a few seconds, then ends it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

WAIT_S = 5.0


def main() -> int:
    base = Path(os.environ.get("POWERGATE_DATA_DIR") or Path(os.environ.get("LOCALAPPDATA", Path.home())) / "powergate")
    candidates = [base / "agent.json", base / "Temp" / "agent.json"]
    try:
        import platformdirs

        candidates.append(Path(platformdirs.user_runtime_dir("powergate", appauthor=False)) / "agent.json")
    except ImportError:
        pass
    for info in candidates:
        try:
            pid = int(json.loads(info.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            import psutil

            proc = psutil.Process(pid)
            proc.terminate()
            proc.wait(WAIT_S)
        except Exception:  # already gone, or not ours to stop: nothing to do
            pass
        print(f"stopped powergate (pid {pid})")
        time.sleep(0.5)
        return 0
    print("powergate was not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
