"""Everything on the request path, owned by the event-loop thread."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agent.cache.codec import KEY_FILE_NAME, make_codec
from agent.cache.layered import LayeredCache
from agent.config import Settings
from agent.control import Controller, ProfileChange
from agent.gateway.flights import Flights
from agent.gateway.upstream import UpstreamPool
from agent.platform import paths
from agent.profiles import Profile

log = logging.getLogger(__name__)


class Runtime:
    """Settings, the profile controller, upstreams, caches and flights of one running agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.controller = Controller(settings)
        self.upstreams = UpstreamPool(settings.upstreams)
        self.flights = Flights()
        self.embed_pending: dict[str, asyncio.Future[Any]] = {}
        key_dir = settings.config_file.parent if settings.config_file else paths.config_dir()
        codec = make_codec(settings.cache.encrypt, key_dir / KEY_FILE_NAME)
        self.cache = LayeredCache.for_profile(
            self.controller.profile, settings.data_dir, codec, settings.cache.redis_url
        )
        self.controller.listeners.append(self._on_profile)
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_profile(self, profile: Profile, change: ProfileChange) -> None:
        # Requests in flight keep the profile they started with; the cache is resized now.
        self.spawn(self.cache.apply_profile(profile))

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
        if self.cache.redis is not None:
            if await self.cache.redis.ping():
                log.info("redis cache tier %s connected", self.settings.cache.redis_url)
            else:
                log.warning(
                    "redis at %s is not reachable: caching in memory and on disk only", self.settings.cache.redis_url
                )

    async def aclose(self) -> None:
        await self.cache.aclose()
        await self.upstreams.aclose()
