"""The configured upstreams, and which one serves a request."""

from __future__ import annotations

from agent.config import UpstreamSettings
from agent.upstreams.base import Upstream
from agent.upstreams.health import UpstreamHealth
from agent.upstreams.ollama import OllamaUpstream


def make_upstream(settings: UpstreamSettings) -> Upstream:
    """The backend for one `[[upstream]]` table."""
    return OllamaUpstream(settings)


class UpstreamPool:
    def __init__(self, settings: tuple[UpstreamSettings, ...]) -> None:
        self.upstreams = [make_upstream(s) for s in settings]

    def pick(self) -> Upstream:
        # Prefer reachable upstreams, then the heaviest weight; an unknown health counts as
        # reachable so that the first request after start is not refused.
        candidates = [u for u in self.upstreams if u.health.reachable is not False] or self.upstreams
        return max(candidates, key=lambda u: u.settings.weight)

    @property
    def primary(self) -> Upstream:
        return self.upstreams[0]

    async def check_all(self) -> list[UpstreamHealth]:
        return [await u.check() for u in self.upstreams]

    async def aclose(self) -> None:
        for u in self.upstreams:
            await u.aclose()
