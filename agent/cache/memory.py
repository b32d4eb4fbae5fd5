"""Memory tier: LRU bounded by bytes, with a TTL per entry. Lives on the event loop
thread only, so it needs no lock."""

from __future__ import annotations

import time
from collections import OrderedDict

from agent.cache.base import Entry, TierStats


class MemoryTier:
    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()  # key -> (entry, expires, size)
        self._bytes = 0
        self.st = TierStats(self.name, max_bytes=max_bytes)

    def get_now(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            self.st.misses += 1
            return None
        entry, expires, size = item
        if expires < time.time():
            self._drop(key)
            self.st.misses += 1
            return None
        self._items.move_to_end(key)
        self.st.hits += 1
        return entry

    async def get(self, key: str) -> Entry | None:
        return self.get_now(key)

    def set_now(self, key: str, entry: Entry, ttl_s: float) -> None:
        size = entry.size + len(key) + 200  # + bookkeeping overhead, roughly
        if size > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (entry, time.time() + ttl_s, size)
        self._bytes += size
        self.st.writes += 1
        self._evict()

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        self.set_now(key, entry, ttl_s)

    def _drop(self, key: str) -> None:
        _, _, size = self._items.pop(key)
        self._bytes -= size

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._items:
            key = next(iter(self._items))
            self._drop(key)
            self.st.evictions += 1

    async def delete(self, key: str) -> None:
        if key in self._items:
            self._drop(key)

    async def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        self._bytes = 0
        return n

    async def resize(self, max_bytes: int) -> None:
        """Takes effect at once: shrinking evicts least recently used entries now."""
        self.max_bytes = max_bytes
        self.st.max_bytes = max_bytes
        self._evict()

    async def stats(self) -> TierStats:
        self.st.entries = len(self._items)
        self.st.bytes = self._bytes
        self.st.enabled = self.max_bytes > 0
        return self.st

    def __len__(self) -> int:
        return len(self._items)

    async def aclose(self) -> None:
        pass
