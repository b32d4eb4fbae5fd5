"""Memory tier: LRU bounded by bytes, with a TTL per entry. Lives on the event loop
thread only, so it needs no lock."""

from __future__ import annotations

import ctypes
import sys
import time
from collections import OrderedDict

from agent.cache.base import Entry, TierStats

KEY_OVERHEAD = 120  # the key string and its OrderedDict slot


def give_back_memory() -> None:
    """Return freed heap pages to the system. CPython frees the entries at once, but
    glibc's malloc keeps the pages for reuse: after a switch to a smaller profile the
    process would keep its peak size. Elsewhere the allocator returns them itself or
    there is no cheap call; nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl): nothing to trim
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


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
        size = entry.footprint + len(key) + KEY_OVERHEAD
        if size > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (entry, time.time() + ttl_s, size)
        self._bytes += size
        entry.on_grow = lambda n: self._grew(key, entry, n)
        self.st.writes += 1
        self._evict()

    def _grew(self, key: str, entry: Entry, n: int) -> None:
        """A held entry kept another replay form: count it (and evict to stay in bounds)."""
        item = self._items.get(key)
        if item is None or item[0] is not entry:
            return
        self._items[key] = (entry, item[1], item[2] + n)
        self._bytes += n
        self._evict()

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        self.set_now(key, entry, ttl_s)

    def _drop(self, key: str) -> None:
        entry, _, size = self._items.pop(key)
        entry.on_grow = None
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
        for entry, _, _ in self._items.values():
            entry.on_grow = None
        self._items.clear()
        self._bytes = 0
        give_back_memory()
        return n

    async def resize(self, max_bytes: int) -> None:
        """Takes effect at once: shrinking evicts least recently used entries now, and
        the freed memory goes back to the system."""
        shrink = max_bytes < self.max_bytes
        self.max_bytes = max_bytes
        self.st.max_bytes = max_bytes
        self._evict()
        if shrink:
            give_back_memory()

    async def stats(self) -> TierStats:
        self.st.entries = len(self._items)
        self.st.bytes = self._bytes
        self.st.enabled = self.max_bytes > 0
        return self.st

    def __len__(self) -> int:
        return len(self._items)

    async def aclose(self) -> None:
        pass
