"""Start at login on every platform (Linux for real; Windows and macOS through the same
code with the registry and home folder injected) and one agent per user."""

from __future__ import annotations

import os
import plistlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.autostart.base import DISABLED, DISABLED_BY_USER, ENABLED
from agent.autostart.linux import LinuxAutostart, parse_entry
from agent.autostart.macos import MacAutostart
from agent.autostart.windows import APPROVED_KEY, RUN_KEY, VALUE_NAME, WindowsAutostart
from agent.platform.single_instance import AlreadyRunning, SingleInstance, WindowsMutex
from tests.conftest import free_port, run_cli, start_agent, wait_for


def test_linux_xdg_autostart_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    r = run_cli("autostart", "status", env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert r.returncode == 0 and "disabled" in r.stdout
    r = run_cli("autostart", "enable", env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert r.returncode == 0 and "enabled" in r.stdout
    desktop = tmp_path / "cfg" / "autostart" / "powergate.desktop"
    entry = parse_entry(desktop.read_text())
    assert entry["Type"] == "Application" and entry["Name"] == "powergate"
    assert entry["X-GNOME-Autostart-enabled"] == "true" and entry["Terminal"] == "false"
    assert "agent run" in entry["Exec"] or entry["Exec"].endswith("powergate run")
    if subprocess.run(["which", "desktop-file-validate"], capture_output=True).returncode == 0:
        assert subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True).returncode == 0
    desktop.write_text(desktop.read_text().replace("X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false"))
    assert LinuxAutostart(desktop.parent).status().state == DISABLED_BY_USER
    r = run_cli("autostart", "disable", env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert r.returncode == 0 and not desktop.exists()


class FakeRegistry:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}

    def get(self, key: str, name: str) -> Any:
        return self.values.get((key, name))

    def set_string(self, key: str, name: str, value: str) -> None:
        self.values[(key, name)] = value

    def delete(self, key: str, name: str) -> None:
        self.values.pop((key, name), None)


def test_windows_run_key_and_task_manager_switch() -> None:
    reg = FakeRegistry()
    cmd = [r"C:\Users\me\AppData\Local\Programs\powergate\venv\Scripts\pythonw.exe", "-m", "agent", "run"]
    w = WindowsAutostart(reg, cmd)
    assert w.status().state == DISABLED
    assert w.enable().state == ENABLED
    assert (
        reg.values[(RUN_KEY, VALUE_NAME)]
        == r"C:\Users\me\AppData\Local\Programs\powergate\venv\Scripts\pythonw.exe -m agent run"
    )
    reg.values[(APPROVED_KEY, VALUE_NAME)] = bytes([3]) + bytes(11)  # the user switched it off in Task Manager
    st = w.status()
    assert st.state == DISABLED_BY_USER and "Task Manager" in st.detail
    assert w.enable().state == DISABLED_BY_USER  # not silently re-enabled
    assert reg.values[(APPROVED_KEY, VALUE_NAME)][0] == 3
    reg.values[(APPROVED_KEY, VALUE_NAME)] = bytes([2]) + bytes(11)
    assert w.status().state == ENABLED
    assert w.disable().state == DISABLED and (RUN_KEY, VALUE_NAME) not in reg.values


def test_macos_launch_agent(tmp_path: Path) -> None:
    m = MacAutostart(home=tmp_path, command=["/usr/local/bin/powergate", "run"])
    assert m.enable().state == ENABLED
    doc = plistlib.loads((tmp_path / "Library/LaunchAgents/com.powergate.agent.plist").read_bytes())
    assert doc["ProgramArguments"] == ["/usr/local/bin/powergate", "run"] and doc["RunAtLoad"] is True
    assert m.disable().state == DISABLED


def test_windows_mutex_logic_with_injected_calls() -> None:
    existing: set[str] = set()
    last = [0]
    closed: list[int] = []

    def create(name: str) -> int:
        last[0] = 183 if name in existing else 0
        existing.add(name)
        return 42

    first = WindowsMutex("Local\\powergate-x", create, lambda: last[0], closed.append)
    assert first.acquire()
    second = WindowsMutex("Local\\powergate-x", create, lambda: last[0], closed.append)
    assert not second.acquire() and closed == [42]
    si = SingleInstance(
        Path("/tmp/nowhere-pg"),
        windows=True,
        mutex=WindowsMutex("Local\\powergate-x", create, lambda: last[0], closed.append),
    )
    with pytest.raises(AlreadyRunning):
        si.acquire("http://127.0.0.1:11435")


def _start(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        POWERGATE_DATA_DIR=str(tmp_path / "d"),
        POWERGATE_PORT=str(port),
        POWERGATE_UPSTREAM=f"http://127.0.0.1:{free_port()}",
    )
    return start_agent(env, "--no-tray")


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_second_run_finds_the_first_even_after_kill_9(tmp_path: Path) -> None:
    port = free_port()
    first = _start(tmp_path, port)
    info = tmp_path / "d" / "agent.json"
    assert wait_for(info.exists, timeout=20)
    second = _start(tmp_path, free_port())  # another port: only the lock can stop it
    _, err = second.communicate(timeout=20)
    assert second.returncode == 1 and f"already running on http://127.0.0.1:{port}" in err
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    time.sleep(0.2)
    third = _start(tmp_path, free_port())  # the stale lock (and agent.json) must not block
    try:
        assert wait_for(lambda: f'"pid": {third.pid}' in info.read_text(), timeout=20)
    finally:
        third.terminate()
        third.communicate(timeout=15)
