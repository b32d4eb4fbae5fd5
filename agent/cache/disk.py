"""Disk tier: diskcache (SQLite) in the data dir. Survives restarts and kill -9:
each set is one SQLite transaction, so an entry is either fully there or absent.

diskcache is blocking, so every call runs on a small dedicated thread pool,
never on the event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache

from agent.cache.base import Entry, TierStats
from agent.cache.codec import Codec
from agent.errors import CacheError

log = logging.getLogger(__name__)

DISK_THREADS = 2  # SQLite serialises writers anyway; two lets a read pass a write


class DiskTier:
    name = "disk"

    def __init__(self, directory: Path, max_bytes: int, codec: Codec) -> None:
        self.directory = directory
        self.codec = codec
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="disk-cache")
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=max(max_bytes, 1),
            eviction_policy="least-recently-used",
            statistics=False,
            # Entries are small: keep them all inside SQLite so one transaction covers each.
            disk_min_file_size=1 << 30,
        )
        self.st = TierStats(self.name, max_bytes=max_bytes)

    async def _run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kw))

    def _get_blocking(self, key: str) -> Entry | None:
        raw = self._cache.get(key)
        if raw is None:
            return None
        try:
            return Entry.decode(self.codec.unpack(raw))
        except (CacheError, ValueError, KeyError) as exc:
            # Written with another key, or by a different version: drop it and go on.
            log.warning("dropping unreadable disk cache entry: %s", exc)
            self._cache.delete(key)
            return None

    async def get(self, key: str) -> Entry | None:
        if self.max_bytes <= 0:
            return None
        entry = await self._run(self._get_blocking, key)
        if entry is None:
            self.st.misses += 1
        else:
            self.st.hits += 1
        return entry

    def get_many_blocking(self, keys: list[str]) -> dict[str, Entry]:
        out = {}
        for k in keys:
            e = self._get_blocking(k)
            if e is not None:
                out[k] = e
        return out

    async def get_many(self, keys: list[str]) -> dict[str, Entry]:
        if self.max_bytes <= 0 or not keys:
            return {}
        found: dict[str, Entry] = await self._run(self.get_many_blocking, keys)
        self.st.hits += len(found)
        self.st.misses += len(keys) - len(found)
        return found

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        if self.max_bytes <= 0:
            return
        data = self.codec.pack(entry.encoded())
        await self._run(self._cache.set, key, data, expire=ttl_s)
        self.st.writes += 1

    def set_many_blocking(self, items: list[tuple[str, Entry]], ttl_s: float) -> None:
        # One transaction for a batch (embedding re-index writes hundreds at once).
        with self._cache.transact():
            for key, entry in items:
                self._cache.set(key, self.codec.pack(entry.encoded()), expire=ttl_s)

    async def set_many(self, items: list[tuple[str, Entry]], ttl_s: float) -> None:
        if self.max_bytes <= 0 or not items:
            return
        await self._run(self.set_many_blocking, items, ttl_s)
        self.st.writes += len(items)

    async def delete(self, key: str) -> None:
        await self._run(self._cache.delete, key)

    async def clear(self) -> int:
        n: int = await self._run(self._cache.clear)
        return n

    async def resize(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.st.max_bytes = max_bytes

        def apply() -> None:
            self._cache.reset("size_limit", max(max_bytes, 1))
            self._cache.cull()

        await self._run(apply)

    async def stats(self) -> TierStats:
        def read() -> tuple[int, int]:
            self._cache.expire()
            return len(self._cache), self._cache.volume()

        self.st.entries, self.st.bytes = await self._run(read)
        self.st.enabled = self.max_bytes > 0
        return self.st

    async def aclose(self) -> None:
        await self._run(self._cache.close)
        self._pool.shutdown(wait=True)
