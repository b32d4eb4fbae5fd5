"""The desktop side of `powergate run`: tray icon, notifications, first start.

Listeners registered here run on the event loop; the tray and the notifier
hand the work to their own threads, so nothing on the request path waits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.control import ProfileChange
from agent.profiles import Profile
from agent.server import AgentServer
from agent.tray.icon import NoTrayHost, TrayApp, profile_label
from agent.tray.notify import Notifier

log = logging.getLogger(__name__)

FIRST_START_MARKER = ".first-start-done"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def wire_notifications(server: AgentServer, notifier: Notifier, url: str) -> None:
    rt = server.runtime
    assert rt is not None

    def on_profile(profile: Profile, change: ProfileChange) -> None:
        if change.previous != change.profile and change.source != "start":
            notifier.notify(
                "profile", "powergate", f"{_sentence(change.reason)} — switched to {profile_label(profile.name)}"
            )

    def on_upstream(upstream: Any, ok: bool) -> None:
        if ok:
            notifier.notify("upstream-up", "powergate", f"Ollama is back at {upstream.url}")
        else:
            notifier.notify(
                "upstream-down", "powergate", f"Ollama is not reachable at {upstream.url}; serving cached answers"
            )

    server.call(rt.controller.listeners.append, on_profile)
    for up in rt.upstreams.upstreams:
        server.call(up.listeners.append, on_upstream)

    marker = Path(rt.settings.data_dir) / FIRST_START_MARKER
    if not marker.exists():
        notifier.notify("first-start", "powergate is running", f"Point your editor's Ollama URL at {url}")
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("")
        except OSError:
            pass


def start_tray(server: AgentServer, url: str, token: str) -> TrayApp | None:
    """Build the tray icon, or None (with the reason logged) when there is nowhere to show it."""
    rt = server.runtime
    assert rt is not None
    tray = TrayApp(url, rt.tray_state, server.request_stop, rt.settings.log_dir, token=token)
    try:
        tray.build()
    except NoTrayHost as exc:
        log.warning("no tray icon: %s; powergate keeps running headless (%s)", exc, url)
        return None
    except Exception as exc:  # a broken GUI stack must not stop the gateway
        log.warning("no tray icon (%s: %s); powergate keeps running headless", type(exc).__name__, exc)
        return None

    def refresh(*_: Any) -> None:
        tray.refresh()

    server.call(rt.controller.listeners.append, refresh)
    server.call(rt.snapshot_listeners.append, refresh)
    for up in rt.upstreams.upstreams:
        server.call(up.listeners.append, refresh)
    return tray
