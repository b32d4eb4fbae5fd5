"""The tray under a real X server (Xvfb) with a real tray host (trayer): the icon
appears, its pixels follow the profile, and with the GTK backend the menu opens and
a click on a profile switches it. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageGrab

from agent.tray.icon import _x11_tray_owner
from tests import system
from tests.conftest import ROOT, agent_up, closed_port_url, free_port, start_agent, wait_for

ARTIFACTS = ROOT / "tests" / "artifacts"
ORANGE, BLUE, GREEN = (232, 89, 12), (28, 126, 214), (47, 158, 68)

pytestmark = pytest.mark.x11


PACKAGES = {"Xvfb": "xvfb", "trayer": "trayer", "xdotool": "xdotool", "dbus-run-session": "dbus"}


def need(tool: str) -> str:
    return system.need(tool, PACKAGES[tool])


class XServer:
    def __init__(self) -> None:
        need("Xvfb")
        need("trayer")
        n = 90
        while Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
            n += 1
        self.display = f":{n}"
        self.xvfb = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(lambda: Path(f"/tmp/.X11-unix/X{n}").exists(), timeout=10), "Xvfb did not start"
        env = dict(os.environ, DISPLAY=self.display)
        self.trayer = subprocess.Popen(
            [
                "trayer",
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "request",
                "--height",
                "32",
                "--SetDockType",
                "true",
                "--transparent",
                "false",
                "--tint",
                "0x202020",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(lambda: _owner(self.display), timeout=10), "trayer did not take the tray selection"

    def shot(self, name: str | None = None) -> Image.Image:
        img = ImageGrab.grab(xdisplay=self.display)
        if name:
            ARTIFACTS.mkdir(exist_ok=True)
            img.save(ARTIFACTS / f"{name}.png")
        return img

    def stop(self) -> None:
        for p in (self.trayer, self.xvfb):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def _owner(display: str) -> bool:
    try:
        return _x11_tray_owner(display)
    except Exception:
        return False


@pytest.fixture
def xserver() -> Iterator[XServer]:
    x = XServer()
    yield x
    x.stop()


def find_colour(
    img: Image.Image, colour: tuple[int, int, int], box: tuple[int, int, int, int] = (560, 0, 800, 40)
) -> list[tuple[int, int]]:
    rgb = img.convert("RGB")
    px = rgb.load()
    out = []
    for x in range(box[0], box[2]):
        for y in range(box[1], box[3]):
            p = px[x, y]
            if sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 40:
                out.append((x, y))
    return out


class Agent:
    def __init__(self, tmp_path: Path, display: str, backend: str, dbus: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        power = tmp_path / "power.json"
        power.write_text(json.dumps({"plugged": True, "percent": 90, "cpu_percent": 3, "ram_available_mb": 8000}))
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n[notifications]\nenabled = false\n')
        env = dict(
            os.environ,
            DISPLAY=display,
            PYSTRAY_BACKEND=backend,
            POWERGATE_CONFIG=str(cfg),
            POWERGATE_DATA_DIR=str(tmp_path / "data"),
            POWERGATE_PORT=str(self.port),
            POWERGATE_UPSTREAM=closed_port_url(),
            XDG_CONFIG_HOME=str(tmp_path / "xdg"),
            NO_AT_BRIDGE="1",
        )
        cmd = [sys.executable, "-m", "agent", "run"]
        if dbus:
            cmd = [need("dbus-run-session"), "--", *cmd]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(self.up, timeout=30, interval=0.2), self.stop()

    def up(self) -> bool:
        try:
            return httpx.get(self.url + "/agent/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def profile(self) -> str:
        return str(httpx.get(self.url + "/agent/profile", timeout=5).json()["profile"])

    def put(self, body: dict[str, Any]) -> None:
        httpx.put(self.url + "/agent/profile", json=body, timeout=5)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def xdotool(display: str, *args: str) -> None:
    subprocess.run([need("xdotool"), *args], env=dict(os.environ, DISPLAY=display), check=True, timeout=10)


def test_icon_appears_and_follows_the_profile_xorg(xserver: XServer, tmp_path: Path) -> None:
    agent = Agent(tmp_path, xserver.display, "xorg")
    try:
        assert wait_for(lambda: len(find_colour(xserver.shot(), ORANGE)) > 20, timeout=15), (
            "no performance icon in the tray"
        )
        before = xserver.shot("tray-xorg-performance")
        agent.put({"profile": "battery-saver"})
        assert wait_for(lambda: len(find_colour(xserver.shot(), GREEN)) > 20, timeout=10)
        after = xserver.shot("tray-xorg-battery-saver")
        assert not find_colour(after, ORANGE) and find_colour(before, ORANGE)
        agent.put({"profile": "balanced"})
        assert wait_for(lambda: len(find_colour(xserver.shot(), BLUE)) > 20, timeout=10)
    finally:
        err = agent.stop()
    assert "tray icon ready (backend xorg: no menu here, a click opens the dashboard)" in err


def _gtk_available() -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401

        return True
    except (ImportError, ValueError):
        return False


def open_menu(xserver: XServer) -> tuple[int, int]:
    pts = find_colour(xserver.shot(), ORANGE) or find_colour(xserver.shot(), GREEN) or find_colour(xserver.shot(), BLUE)
    assert pts, "tray icon not found"
    x = sum(p[0] for p in pts) // len(pts)
    y = sum(p[1] for p in pts) // len(pts)
    xdotool(xserver.display, "mousemove", str(x), str(y), "click", "3")
    time.sleep(0.8)
    return x, y


def test_gtk_menu_switches_profile_and_quits(xserver: XServer, tmp_path: Path) -> None:
    if not _gtk_available():
        system.missing(
            "PyGObject (GTK 3) is not installed (needs Debian's libgirepository1.0-dev libcairo2-dev gir1.2-gtk-3.0)"
        )
    agent = Agent(tmp_path, xserver.display, "gtk", dbus=True)
    try:
        assert wait_for(lambda: len(find_colour(xserver.shot(), ORANGE)) > 20, timeout=15)
        open_menu(xserver)
        menu = xserver.shot("tray-gtk-menu-open")
        light = sum(1 for x in range(400, 800, 4) for y in range(40, 400, 4) if min(menu.getpixel((x, y))[:3]) > 200)
        assert light > 100, "the menu did not open"
        # Open dashboard, Performance, Balanced, Battery saver
        xdotool(xserver.display, "key", "Down", "Down", "Down", "Down", "Return")
        assert wait_for(lambda: agent.profile() == "battery-saver", timeout=10)
        assert wait_for(lambda: len(find_colour(xserver.shot(), GREEN)) > 20, timeout=10)
        xserver.shot("tray-gtk-battery-saver")
        status = httpx.get(agent.url + "/agent/status", timeout=5).json()
        assert status["mode"] == "manual" and status["history"][-1]["source"] == "tray"
        # The menu follows changes made elsewhere: switch through the API, then Quit from the menu.
        agent.put({"profile": "balanced"})
        assert wait_for(lambda: len(find_colour(xserver.shot(), BLUE)) > 20, timeout=10)
        open_menu(xserver)
        xserver.shot("tray-gtk-menu-balanced")
        xdotool(xserver.display, "key", "Up", "Return")  # Up from the top wraps to Quit
        t0 = time.monotonic()
        agent.proc.wait(timeout=10)
        assert time.monotonic() - t0 < 8
        err = agent.stop()
        assert agent.proc.returncode == 0, err[-2000:]
    finally:
        agent.stop()


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_no_display_runs_headless(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    env.update(POWERGATE_DATA_DIR=str(tmp_path / "d"), POWERGATE_PORT=str(port), POWERGATE_UPSTREAM=closed_port_url())
    proc = start_agent(env)
    log = tmp_path / "d" / "logs" / "powergate.log"
    try:
        assert wait_for(lambda: agent_up(port), timeout=20, interval=0.2)
        # the tray decision is logged just after the port opens: wait for it, not for the port
        wait_for(lambda: "keeps running headless" in _text(log), timeout=20, interval=0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "no tray icon: no display" in err and "keeps running headless" in err


def test_display_without_tray_host_runs_headless(tmp_path: Path) -> None:
    need("Xvfb")
    n = 140
    while Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
        n += 1
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: Path(f"/tmp/.X11-unix/X{n}").exists(), timeout=10)
        port = free_port()
        env = dict(
            os.environ,
            DISPLAY=f":{n}",
            POWERGATE_DATA_DIR=str(tmp_path / "d"),
            POWERGATE_PORT=str(port),
            POWERGATE_UPSTREAM=closed_port_url(),
        )
        env.pop("PYSTRAY_BACKEND", None)
        proc = start_agent(env)
        log = tmp_path / "d" / "logs" / "powergate.log"
        try:
            up = wait_for(lambda: agent_up(port), timeout=30, interval=0.2)
            # the tray decision is logged just after the port opens: wait for it, not for the port
            wait_for(lambda: "no system tray host" in _text(log), timeout=30, interval=0.2)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
        assert up, err[-2000:]
        assert "no system tray host" in err, err[-2000:]
    finally:
        xvfb.terminate()
        xvfb.wait(5)
