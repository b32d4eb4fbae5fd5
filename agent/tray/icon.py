"""The tray icon (pystray) on the main thread.

It only reads the agent's state and sends its commands through the control
API, the same path `powergate profile` and the dashboard use, so there is one
way to change the agent. The icon and menu follow changes made elsewhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import webbrowser
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from agent.autostart import Autostart, autostart_for_platform
from agent.tray.images import draw_icon

log = logging.getLogger(__name__)

ICON_SIZE = 64
CONTROL_TIMEOUT = 5.0  # seconds for a menu action's call to the control API
HIT_WINDOW_S = 300.0  # the tooltip's cache hit ratio covers the last five minutes
LABELS = {"performance": "Performance", "balanced": "Balanced", "battery-saver": "Battery saver"}


class NoTrayHost(Exception):
    """There is no display or no system tray to show an icon in."""


def profile_label(name: str) -> str:
    return LABELS.get(name, name.replace("-", " ").capitalize())


def _x11_tray_owner(display_name: str) -> bool:
    from Xlib import display as xdisplay  # python-xlib, a pystray dependency on Linux

    d = xdisplay.Display(display_name)
    try:
        atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
        return bool(d.get_selection_owner(atom))
    finally:
        d.close()


def choose_backend(env: dict[str, str] | None = None, platform: str | None = None) -> str | None:
    """The pystray backend to use, chosen explicitly (None: pystray's default for the OS).

    On Linux, pystray's own probe tries appindicator first and can raise instead of
    falling back, so we decide: a backend the user set in PYSTRAY_BACKEND; GTK when
    PyGObject is there (a real menu); otherwise plain X11 (icon only, click opens the
    dashboard). No display or no tray host raises NoTrayHost."""
    env = dict(os.environ) if env is None else env
    platform = platform or sys.platform
    if platform in ("win32", "darwin"):
        return None
    if not env.get("DISPLAY"):
        if env.get("WAYLAND_DISPLAY"):
            raise NoTrayHost("Wayland without XWayland (DISPLAY is not set): no tray")
        raise NoTrayHost("no display (DISPLAY is not set)")
    chosen = env.get("PYSTRAY_BACKEND")
    try:
        if not _x11_tray_owner(env["DISPLAY"]) and chosen != "appindicator":
            raise NoTrayHost(f"no system tray host on display {env['DISPLAY']}")
    except NoTrayHost:
        raise
    except Exception as exc:  # cannot even open the display
        raise NoTrayHost(f"cannot open display {env['DISPLAY']}: {exc}") from None
    if chosen:
        return chosen
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401

        return "gtk"
    except (ImportError, ValueError):
        return "xorg"


class TrayApp:
    def __init__(
        self,
        url: str,
        read_state: Callable[[], dict[str, Any]],
        on_quit: Callable[[], None],
        log_dir: Path,
        token: str = "",
        autostart: Autostart | None = None,
    ) -> None:
        self.url = url
        self.read_state = read_state
        self.on_quit = on_quit
        self.log_dir = log_dir
        self.headers = {"X-Powergate-Token": token} if token else {}
        self.autostart = autostart or autostart_for_platform()
        self.icon: Any = None
        self.backend: str | None = None
        self._hits: deque[tuple[float, int, int]] = deque(maxlen=512)
        self._shown: tuple[Any, ...] = ()

    # ------------------------------------------------------------ control path
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = httpx.request(
                method, self.url + path, json=body, headers=self.headers, timeout=CONTROL_TIMEOUT, trust_env=False
            )
            return r.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("tray action %s %s failed: %s", method, path, exc)
            return None

    def set_profile(self, name: str) -> None:
        self._call("PUT", "/agent/profile", {"profile": name, "source": "tray"})
        self.refresh()

    def toggle_auto(self) -> None:
        mode = "manual" if self.read_state().get("mode") == "auto" else "auto"
        self._call("PUT", "/agent/profile", {"mode": mode, "source": "tray"})
        self.refresh()

    def toggle_pause(self) -> None:
        paused = bool(self.read_state().get("cache_paused"))
        self._call("PUT", "/agent/cache", {"paused": not paused})
        self.refresh()

    def clear_cache(self) -> None:
        self._call("POST", "/agent/cache/clear")

    def toggle_autostart(self) -> None:
        try:
            if self.autostart.status().enabled:
                self.autostart.disable()
            else:
                self.autostart.enable()
        except OSError as exc:
            log.warning("start at login could not be changed: %s", exc)
        self.refresh()

    def open_dashboard(self) -> None:
        webbrowser.open(self.url + "/dashboard")

    def open_logs(self) -> None:
        path = str(self.log_dir)
        try:
            if sys.platform == "win32":
                os.startfile(path)  # type: ignore[attr-defined]
            elif sys.platform == "darwin":
                subprocess.Popen(["open", path])
            else:
                subprocess.Popen(["xdg-open", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)

    def quit(self) -> None:
        log.info("quit from the tray")
        if self.icon is not None:
            self.icon.stop()

    # ------------------------------------------------------------ view
    def hit_ratio(self, state: dict[str, Any]) -> float | None:
        """Cache hit ratio over the last minutes, from the running totals."""
        now = time.monotonic()
        self._hits.append((now, int(state.get("hits", 0)), int(state.get("lookups", 0))))
        old = next((h for h in self._hits if now - h[0] <= HIT_WINDOW_S), self._hits[0])
        lookups = self._hits[-1][2] - old[2]
        if lookups <= 0:
            return None
        return (self._hits[-1][1] - old[1]) / lookups

    def title(self, state: dict[str, Any]) -> str:
        parts = [f"powergate: {profile_label(state['profile'])} ({state['mode']})"]
        pct = state.get("battery_percent")
        if pct is not None:
            parts.append(f"battery {pct:.0f}%{' charging' if state.get('plugged') else ''}")
        elif state.get("plugged") is not None:
            parts.append("on AC")
        ratio = self.hit_ratio(state)
        parts.append(f"cache hits {ratio:.0%} (5 min)" if ratio is not None else "no requests yet")
        if state.get("upstream_down"):
            parts.append("Ollama not reachable")
        if state.get("cache_paused"):
            parts.append("cache paused")
        return " · ".join(parts)

    def image(self, state: dict[str, Any]) -> Any:
        return draw_icon(state["profile"], ICON_SIZE, bool(state.get("upstream_down")), bool(state.get("cache_paused")))

    def refresh(self) -> None:
        """Redraw the icon, tooltip and menu from the current state (any thread)."""
        if self.icon is None:
            return
        try:
            state = self.read_state()
            shown = (state["profile"], bool(state.get("upstream_down")), bool(state.get("cache_paused")))
            if shown != self._shown:
                self._shown = shown
                self.icon.icon = self.image(state)
            self.icon.title = self.title(state)
            self.icon.update_menu()
        except Exception:  # the tray must never take the agent down
            log.exception("tray refresh failed")

    def menu(self) -> Any:
        import pystray

        state = self.read_state
        items: list[Any] = [
            pystray.MenuItem("Open dashboard", lambda: self.open_dashboard(), default=True),
            pystray.Menu.SEPARATOR,
        ]
        for name in state().get("profiles", []):
            items.append(
                pystray.MenuItem(
                    profile_label(name),
                    (lambda n: lambda: self.set_profile(n))(name),
                    checked=(lambda n: lambda item: state()["profile"] == n)(name),
                    radio=True,
                )
            )
        items += [
            pystray.MenuItem("Auto", lambda: self.toggle_auto(), checked=lambda item: state()["mode"] == "auto"),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem(
                "Pause cache", lambda: self.toggle_pause(), checked=lambda item: bool(state().get("cache_paused"))
            ),
            pystray.MenuItem("Clear cache", lambda: self.clear_cache()),
            pystray.MenuItem(
                "Start at login", lambda: self.toggle_autostart(), checked=lambda item: self._autostart_on()
            ),
            pystray.MenuItem("Open logs", lambda: self.open_logs()),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem("Quit", lambda: self.quit()),
        ]
        return pystray.Menu(*items)

    def _autostart_on(self) -> bool:
        try:
            return self.autostart.status().enabled
        except OSError:
            return False

    def build(self) -> Any:
        """Create the pystray icon (raises NoTrayHost when there is nowhere to show it)."""
        self.backend = choose_backend()
        if self.backend:
            os.environ["PYSTRAY_BACKEND"] = self.backend
        import pystray  # imported late: PYSTRAY_BACKEND is read at import

        state = self.read_state()
        self._shown = (state["profile"], bool(state.get("upstream_down")), bool(state.get("cache_paused")))
        self.icon = pystray.Icon("powergate", self.image(state), self.title(state), self.menu())
        log.info(
            "tray icon ready (backend %s%s)",
            self.backend or "default",
            "" if getattr(self.icon, "HAS_MENU", True) else ": no menu here, a click opens the dashboard",
        )
        return self.icon

    def run(self) -> None:
        """Blocks on the main thread until Quit."""
        if self.icon is None:
            self.build()
        try:
            self.icon.run(setup=self._setup)
        except Exception as exc:
            # e.g. pystray's GTK backend hiding its notification on exit without a
            # notification daemon on D-Bus: the tray is gone either way, the agent stops cleanly.
            log.info("tray ended with %s: %s", type(exc).__name__, exc)

    def _setup(self, icon: Any) -> None:
        icon.visible = True
