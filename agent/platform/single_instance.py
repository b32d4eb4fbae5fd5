"""One agent per user: a named mutex on Windows, an flock'ed lock file elsewhere.

Both are released by the OS when the process dies, even after kill -9, so a
stale lock never blocks a start. Beside the lock, `agent.json` says where the
running agent listens, so a second `powergate run` can tell the user.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs

from agent.platform.paths import APP_NAME
from agent.platform.private import private_dir, private_file

ERROR_ALREADY_EXISTS = 183
INFO_FILE = "agent.json"


def lock_dir() -> Path:
    # With POWERGATE_DATA_DIR (portable installs, tests) the lock lives there, so that
    # independent data dirs are independent agents; otherwise one per user.
    env = os.environ.get("POWERGATE_DATA_DIR")
    if env:
        return Path(env)
    try:
        return Path(platformdirs.user_runtime_dir(APP_NAME, appauthor=False))
    except Exception:  # no runtime dir on this platform
        return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class AlreadyRunning(Exception):
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        where = info.get("url", "an unknown address")
        pid = f" (pid {info['pid']})" if info.get("pid") else ""
        super().__init__(f"powergate is already running on {where}{pid}; `powergate status` asks it how it is doing")


class WindowsMutex:
    """CreateMutexW in the user's session; the calls are injectable for tests."""

    def __init__(
        self,
        name: str,
        create: Callable[[str], int] | None = None,
        last_error: Callable[[], int] | None = None,
        close: Callable[[int], Any] | None = None,
    ) -> None:
        self.name = name
        if create is None:
            import ctypes

            k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            k32.CreateMutexW.restype = ctypes.c_void_p
            create = lambda n: int(k32.CreateMutexW(None, False, n) or 0)  # noqa: E731
            last_error = k32.GetLastError
            close = k32.CloseHandle
        self._create = create
        self._last_error = last_error or (lambda: 0)
        self._close = close or (lambda h: None)
        self.handle = 0

    def acquire(self) -> bool:
        self.handle = self._create(self.name)
        if self.handle and self._last_error() == ERROR_ALREADY_EXISTS:
            self._close(self.handle)
            self.handle = 0
            return False
        return bool(self.handle)

    def release(self) -> None:
        if self.handle:
            self._close(self.handle)
            self.handle = 0


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def acquire(self) -> bool:
        import fcntl  # POSIX only; Windows uses WindowsMutex

        private_dir(self.path.parent)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the agent
        private_file(self.path)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SingleInstance:
    def __init__(
        self, directory: Path | None = None, windows: bool | None = None, mutex: WindowsMutex | None = None
    ) -> None:
        self.dir = directory or lock_dir()
        self.info_path = self.dir / INFO_FILE
        on_windows = sys.platform == "win32" if windows is None else windows
        if on_windows:
            tag = hashlib.sha1(str(self.dir).lower().encode()).hexdigest()[:12]
            self._lock: WindowsMutex | FileLock = mutex or WindowsMutex(f"Local\\\\powergate-{tag}")
        else:
            self._lock = FileLock(self.dir / "agent.lock")

    def acquire(self, url: str) -> None:
        """Take the lock or raise AlreadyRunning with where the other agent listens."""
        if not self._lock.acquire():
            raise AlreadyRunning(self.read_info())
        private_dir(self.dir)
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "url": url}))
        private_file(tmp)
        os.replace(tmp, self.info_path)

    def read_info(self) -> dict[str, Any]:
        try:
            data = json.loads(self.info_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        try:
            if self.read_info().get("pid") == os.getpid():
                self.info_path.unlink()
        except OSError:
            pass
        self._lock.release()
