"""Everything on the request path, owned by the event-loop thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from agent.cache.codec import KEY_FILE_NAME, make_codec
from agent.cache.layered import MB, LayeredCache
from agent.config import Settings
from agent.control import Controller, ProfileChange
from agent.journey.flights import Flights
from agent.metrics import Metrics, StateCollector
from agent.platform import paths
from agent.platform.private import private_dir
from agent.power.base import PowerSnapshot
from agent.prefetch import Prefetcher
from agent.profiles import TIERS, Profile
from agent.routing import tier_of
from agent.runner_context import ContextChoice, RunnerContexts
from agent.savings import Savings
from agent.services.lightrag import LightRAGFront
from agent.upstreams.pool import UpstreamPool

if TYPE_CHECKING:
    from agent.services.postgres import DatabaseService

log = logging.getLogger(__name__)

PRESSURE_MEMORY_MB = 16  # memory tier size while the machine is short of RAM
RUNNER_KEYS = ("num_ctx", "num_thread", "num_batch")  # options whose change makes Ollama reload
# Model names come from clients: any string. The table of what each model's clients last
# asked is kept for the most recently used models only, so 10,000 made-up names cost nothing.
MAX_RUNNER_MODELS = 64


class Runtime:
    """Settings, the profile controller, upstreams, caches and flights of one running agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.controller = Controller(settings)
        self.upstreams = UpstreamPool(settings.upstreams)
        for up in self.upstreams.upstreams:
            # whether a suggestion may pause a running generation: the profile in force decides
            up.scheduler.preempt_enabled = lambda: self.controller.profile.preempt
        self.flights = Flights()
        self.embed_pending: dict[str, asyncio.Future[Any]] = {}
        # the user's alone; only its top here: the folders we create in it (cache, logs) are
        # made private by their owners, and a --data-dir may hold files that are not ours
        private_dir(settings.data_dir)
        key_dir = settings.config_file.parent if settings.config_file else paths.config_dir()
        codec = make_codec(settings.cache.encrypt, key_dir / KEY_FILE_NAME)
        self.cache = LayeredCache.for_profile(
            self.controller.profile, settings.data_dir, codec, settings.cache.redis_url, settings.cache.redis_key
        )
        self.controller.listeners.append(self._on_profile)
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.monitor: Any = None  # PowerMonitor, set by the server once the loop runs
        self.snapshot_listeners: list[Any] = []
        self.memory_pressure = False
        # runner options each model last got from its clients, to count reloads we avoided
        self._client_runner: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.reloads_avoided = 0
        self.contexts = RunnerContexts()
        self.unloads = 0
        self.capped = 0
        self.counters: dict[str, int] = {}  # prefetch and scheduling counts, for metrics
        pg = settings.postgres
        # The advised database, if any: it lives on its own worker thread (psycopg blocks).
        # psycopg is imported only then, so an agent without [postgres] starts as fast as before.
        self.database: DatabaseService | None = None
        if pg.dsn:
            from agent.services.postgres import DatabaseService

            self.database = DatabaseService(pg.dsn, pg.role, pg.lightrag_env, settings.data_dir)
        self.prefetcher = Prefetcher(self)
        # LightRAG's front, when one is configured; its corpus watch runs at the sampling rhythm
        self.lightrag = LightRAGFront(self, settings.lightrag) if settings.lightrag.enabled else None
        if self.lightrag is not None:
            self.snapshot_listeners.append(self.lightrag.on_snapshot)
        self.savings = Savings(settings.savings.model_watts)
        self.metrics = Metrics(self.savings)
        self.metrics.registry.register(StateCollector(self))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ profile and power
    def _on_profile(self, profile: Profile, change: ProfileChange) -> None:
        # Requests in flight keep the profile they started with; caches resize now.
        self.spawn(self._apply_profile(profile))
        if self.monitor is not None:
            self.monitor.set_interval(profile.interval_s)
        if self.database is not None:
            # queued on the database's own thread: never awaited, so the switch is never delayed
            self.database.on_profile(profile.ef_search)

    async def _apply_profile(self, profile: Profile) -> None:
        await self.cache.apply_profile(profile)
        if self.memory_pressure:
            await self.cache.resize_memory(min(self.cache.memory_budget, PRESSURE_MEMORY_MB * MB))
        if profile.enforce_cap:
            await self.unload_above(profile.cap, keep=set())

    def on_snapshot(self, snap: PowerSnapshot) -> None:
        decision = self.controller.on_snapshot(snap)
        self.metrics.record_power(snap.as_dict(), self.controller.profile.name)
        # Ollama's health is checked at the sampling rate the profile allows, so the tray
        # badge and notifications follow Ollama going away or coming back.
        self.upstreams.observe(snap, self.controller.profile.name, self.controller.profile.interval_s)
        self.spawn(self.upstreams.refresh())
        if self.database is not None:
            self.database.maybe_refresh()
        for listener in list(self.snapshot_listeners):
            listener(snap)
        if decision.memory_pressure != self.memory_pressure:
            self.memory_pressure = decision.memory_pressure
            if self.memory_pressure:
                log.warning(
                    "RAM is short (%.0f MB available): shrinking the memory cache and unloading idle models",
                    snap.ram_available_mb,
                )
                self.spawn(self._relieve_memory())
            else:
                log.info("RAM is fine again (%.0f MB available)", snap.ram_available_mb)
                self.spawn(self.cache.apply_profile(self.controller.profile))

    async def _relieve_memory(self) -> None:
        await self.cache.resize_memory(min(self.cache.memory_budget, PRESSURE_MEMORY_MB * MB))
        p = self.controller.profile
        keep = {self.settings.models.for_tier(p.autocomplete)}
        await self.unload_above("small", keep=keep)

    async def unload_above(self, cap: str, keep: set[str]) -> list[str]:
        """Unload every loaded model whose tier is above `cap` (unknown models are left alone)."""
        done = []
        for up in self.upstreams.upstreams:
            for model in await up.loaded_models():
                tier = tier_of(model, self.settings.models)
                if model in keep or tier is None or TIERS.index(tier) <= TIERS.index(cap):
                    continue
                if await up.unload(model):
                    self.unloads += 1
                    done.append(model)
                    log.info("asked Ollama at %s to unload %s (above %s)", up.url, model, cap)
        return done

    # ------------------------------------------------------------ runner options
    async def normalise_runner(self, body: dict[str, Any], profile: Profile, kind: str) -> ContextChoice | None:
        """Send the profile's keep_alive and num_thread whatever each client asked, and one
        num_ctx per model rounded up (agent/runner_context.py), so that Ollama loads each
        model once instead of reloading it per client. Returns the num_ctx choice made."""
        model = body["model"]
        if body.get("keep_alive") not in (0, "0", "0s", "0m"):  # an explicit unload is honoured
            body["keep_alive"] = profile.keep_alive
        raw_opts = body.get("options")
        opts = dict(raw_opts) if isinstance(raw_opts, dict) else {}
        asked = tuple(opts.get(k) for k in RUNNER_KEYS)
        before = self._client_runner.get(model)
        if before is not None and before != asked:
            self.reloads_avoided += 1
        self._client_runner[model] = asked
        self._client_runner.move_to_end(model)
        while len(self._client_runner) > MAX_RUNNER_MODELS:
            self._client_runner.popitem(last=False)
        choice = None
        if kind not in ("embed", "embeddings"):
            await self.contexts.refresh(self.upstreams.upstreams)
            choice = self.contexts.choose(model, profile, opts.get("num_ctx"))
            opts["num_ctx"] = choice.sent
        threads = profile.resolved_num_thread()
        if threads is None:
            opts.pop("num_thread", None)
        else:
            opts["num_thread"] = threads
        opts.pop("num_batch", None)
        body["options"] = opts
        return choice

    def tray_state(self) -> dict[str, Any]:
        """What the tray shows; read from the tray's thread (plain values only)."""
        c = self.controller
        power = c.power
        mem = self.cache.memory.st
        disk_hits = self.cache.disk.st.hits if self.cache.disk else 0
        redis_hits = self.cache.redis.st.hits if self.cache.redis else 0
        return {
            "profile": c.profile.name,
            "mode": c.mode,
            "profiles": c.profile_names,
            "cache_paused": c.cache_paused,
            "upstream_down": any(u.health.reachable is False for u in self.upstreams.upstreams),
            "battery_percent": power.percent if power else None,
            "plugged": power.plugged if power else None,
            "hits": mem.hits + disk_hits + redis_hits + self.cache.typeahead.hits,
            "lookups": mem.hits + mem.misses,
        }

    def routing_stats(self) -> dict[str, Any]:
        return {
            "reloads_avoided": self.reloads_avoided,
            "unloads": self.unloads,
            "capped": self.capped,
            "hosts": self.upstreams.routing_stats(),
        }

    def savings_figures(self) -> dict[str, Any]:
        """The `savings` object of /agent/status and /agent/metrics."""
        sched = sum(
            u.scheduler.stats.dropped_before_upstream + u.scheduler.stats.superseded for u in self.upstreams.upstreams
        )
        return self.savings.describe(sched)

    def scheduling_stats(self) -> dict[str, Any]:
        per = {u.url: u.scheduler.describe() for u in self.upstreams.upstreams}
        return {
            "upstreams": per,
            "dropped_before_upstream": sum(u.scheduler.stats.dropped_before_upstream for u in self.upstreams.upstreams),
            "superseded": sum(u.scheduler.stats.superseded for u in self.upstreams.upstreams),
            "prefetch": {
                k: self.counters.get(k, 0)
                for k in ("prefetch_issued", "prefetch_used", "prefetch_wasted", "prefetch_skipped", "warmups")
            },
            "speculation": self.prefetcher.describe(),
            "preemption": {
                "enabled": self.controller.profile.preempt,
                **{
                    k: sum(getattr(u.scheduler.stats, k) for u in self.upstreams.upstreams)
                    for k in ("paused", "resumed", "paused_s", "held_after_abort")
                },
            },
        }

    # ------------------------------------------------------------ life cycle
    async def start(self) -> None:
        down = 0
        if self.database is not None:
            self.database.on_profile(self.controller.profile.ef_search)
            self.database.maybe_refresh()
        # the first background check: health, model lists and loaded models before any request
        await self.upstreams.refresh()
        for up in self.upstreams.upstreams:
            health = up.health
            if health.reachable:
                log.info("upstream %s ready (Ollama %s)", up.url, health.version)
            else:
                down += 1  # the health check has said so, with the URL and how to start it: once is enough
        if down:
            log.info(
                "powergate starts anyway: cached answers are served, and requests that need an unreachable "
                "upstream get a 502 naming it until it is up"
            )
        if self.lightrag is not None:
            await self.lightrag.start()
        if self.cache.redis is not None:
            if await self.cache.redis.ping():
                log.info("redis cache tier %s connected", self.settings.cache.redis_url)
            else:
                log.warning(
                    "redis at %s is not reachable: caching in memory and on disk only", self.settings.cache.redis_url
                )

    async def aclose(self) -> None:
        if self.database is not None:
            self.database.close()
        if self.lightrag is not None:
            await self.lightrag.aclose()
        await self.cache.aclose()
        await self.upstreams.aclose()
