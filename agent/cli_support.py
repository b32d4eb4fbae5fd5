"""Small helpers shared by the command line and `doctor`."""

from __future__ import annotations

from agent.config import Settings


def agent_url_for(settings: Settings) -> str:
    """The URL a local client uses to reach the agent (0.0.0.0 -> 127.0.0.1)."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"
