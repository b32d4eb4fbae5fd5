"""Everything on the request path, owned by the event-loop thread."""

from __future__ import annotations

import logging
import time

from agent.config import Settings
from agent.control import Controller
from agent.gateway.upstream import UpstreamPool

log = logging.getLogger(__name__)


class Runtime:
    """Settings, the profile controller and the upstream pool of one running agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.controller = Controller(settings)
        self.upstreams = UpstreamPool(settings.upstreams)
        self.started_at = time.time()

    async def start(self) -> None:
        for health, up in zip(await self.upstreams.check_all(), self.upstreams.upstreams, strict=True):
            if health.reachable:
                log.info("upstream %s ready (Ollama %s)", up.url, health.version)
            else:
                log.warning(
                    "Ollama is not reachable at %s yet: powergate starts anyway and serves cached "
                    "answers; requests that need Ollama get a clear 502 until it is up",
                    up.url,
                )

    async def aclose(self) -> None:
        await self.upstreams.aclose()
