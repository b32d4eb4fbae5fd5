"""Memory -> disk -> Redis: reads in that order with promotion on a hit, writes to
every tier the profile enables, in the background so no answer waits for a write."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agent.cache.base import Entry, TierStats
from agent.cache.codec import Codec
from agent.cache.disk import DiskTier
from agent.cache.memory import MemoryTier
from agent.cache.redis import RedisTier
from agent.cache.typeahead import TypeaheadIndex
from agent.profiles import Profile

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Of a profile's memory_mb, the part the typeahead index may hold (its completion texts);
# the memory tier gets the rest, so the two together keep the profile's bound.
TYPEAHEAD_SHARE = 0.125
HIT = {"memory": "hit-memory", "disk": "hit-disk", "redis": "hit-redis"}


class LayeredCache:
    def __init__(self, memory: MemoryTier, disk: DiskTier | None, redis: RedisTier | None, ttl_s: float) -> None:
        self.memory = memory
        self.disk = disk
        self.redis = redis
        self.ttl_s = ttl_s
        self.typeahead = TypeaheadIndex()
        self.memory_budget = memory.max_bytes
        self._writes: set[asyncio.Task[None]] = set()
        self.coalesced = 0
        self.typeahead_hits = 0
        self.cleared_at = 0.0

    @classmethod
    def for_profile(
        cls, profile: Profile, data_dir: Any, codec: Codec, redis_url: str, redis_key: str = ""
    ) -> LayeredCache:
        from pathlib import Path

        disk = DiskTier(Path(data_dir) / "cache", int(profile.disk_mb * MB), codec)
        redis = RedisTier(redis_url, codec, redis_key) if redis_url else None
        budget = int(profile.memory_mb * MB)
        cache = cls(MemoryTier(budget), disk, redis, profile.ttl_s)
        cache.split_memory(budget)
        return cache

    def split_memory(self, budget: int) -> None:
        """Share one memory budget between the answers and the typeahead index."""
        self.memory_budget = budget
        self.typeahead.resize(int(budget * TYPEAHEAD_SHARE))
        self.memory.max_bytes = self.memory.st.max_bytes = budget - self.typeahead.max_bytes

    @property
    def tiers(self) -> list[Any]:
        return [t for t in (self.memory, self.disk, self.redis) if t is not None]

    # ------------------------------------------------------------ reads
    def lookup_memory(self, key: str) -> Entry | None:
        return self.memory.get_now(key) if self.memory.max_bytes > 0 else None

    async def lookup(self, key: str) -> tuple[Entry | None, str]:
        """(entry, "hit-<tier>") or (None, "miss"). Memory first, without leaving the loop."""
        e = self.lookup_memory(key)
        if e is not None:
            return e, "hit-memory"
        if self.disk is not None:
            e = await self.disk.get(key)
            if e is not None:
                self.memory.set_now(key, e, self.ttl_s)
                return e, "hit-disk"
        if self.redis is not None:
            e = await self.redis.get(key)
            if e is not None:
                self.memory.set_now(key, e, self.ttl_s)
                if self.disk is not None:
                    self._background(self.disk.set(key, e, self.ttl_s))
                return e, "hit-redis"
        return None, "miss"

    async def lookup_many(self, keys: list[str]) -> dict[str, tuple[Entry, str]]:
        found: dict[str, tuple[Entry, str]] = {}
        for k in keys:
            e = self.lookup_memory(k)
            if e is not None:
                found[k] = (e, "hit-memory")
        rest = [k for k in keys if k not in found]
        if rest and self.disk is not None:
            for k, e in (await self.disk.get_many(rest)).items():
                found[k] = (e, "hit-disk")
                self.memory.set_now(k, e, self.ttl_s)
            rest = [k for k in rest if k not in found]
        if rest and self.redis is not None:
            got = await self.redis.get_many(rest)
            for k, e in got.items():
                found[k] = (e, "hit-redis")
                self.memory.set_now(k, e, self.ttl_s)
            if got and self.disk is not None:
                self._background(self.disk.set_many(list(got.items()), self.ttl_s))
        return found

    # ------------------------------------------------------------ writes
    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(self._guard(coro))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except Exception:  # a failing tier must never fail a request
            log.exception("cache write failed")

    def store(self, key: str, entry: Entry) -> None:
        self.memory.set_now(key, entry, self.ttl_s)
        if self.disk is not None:
            self._background(self.disk.set(key, entry, self.ttl_s))
        if self.redis is not None:
            self._background(self.redis.set(key, entry, self.ttl_s))

    def store_many(self, items: list[tuple[str, Entry]]) -> None:
        for k, e in items:
            self.memory.set_now(k, e, self.ttl_s)
        if self.disk is not None:
            self._background(self.disk.set_many(items, self.ttl_s))
        if self.redis is not None:
            self._background(self.redis.set_many(items, self.ttl_s))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait for background writes (on shutdown: what was answered is also stored)."""
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=timeout)

    # ------------------------------------------------------------ control
    async def clear(self) -> dict[str, int]:
        await self.flush()
        out = {}
        for t in self.tiers:
            out[t.name] = await t.clear()
        self.typeahead.clear()
        self.cleared_at = time.time()
        return out

    async def apply_profile(self, profile: Profile) -> None:
        self.ttl_s = profile.ttl_s
        await self.resize_memory(int(profile.memory_mb * MB))
        if self.disk is not None:
            await self.disk.resize(int(profile.disk_mb * MB))

    async def resize_memory(self, budget: int) -> None:
        """One memory budget for the answers and the typeahead index; a shrink evicts now."""
        self.memory_budget = budget
        self.typeahead.resize(int(budget * TYPEAHEAD_SHARE))
        await self.memory.resize(budget - self.typeahead.max_bytes)

    async def stats(self) -> list[TierStats]:
        return [await t.stats() for t in self.tiers]

    async def describe(self) -> dict[str, Any]:
        tiers = await self.stats()
        hits = sum(t.hits for t in tiers)
        lookups = self.memory.st.hits + self.memory.st.misses
        return {
            "tiers": [t.as_dict() for t in tiers],
            "typeahead": {
                "entries": len(self.typeahead),
                "hits": self.typeahead.hits,
                "lookups": self.typeahead.lookups,
            },
            "coalesced": self.coalesced,
            "hit_ratio": round(hits / lookups, 4) if lookups else 0.0,
            "encrypted": bool(self.disk and self.disk.codec.encrypted),
        }

    async def aclose(self) -> None:
        await self.flush()
        for t in self.tiers:
            await t.aclose()
