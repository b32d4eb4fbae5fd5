"""Disk tier: diskcache (SQLite) in the data dir. Survives restarts and kill -9:
each set is one SQLite transaction, so an entry is either fully there or absent.

diskcache is blocking, so every call runs on a small dedicated thread pool,
never on the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache

from agent.cache.base import Entry, TierStats
from agent.cache.codec import MAX_ENTRY_BYTES, Codec
from agent.errors import CacheError
from agent.logs import escape_controls
from agent.platform.private import private_dir, private_tree

log = logging.getLogger(__name__)

DISK_THREADS = 2  # SQLite serialises writers anyway; two lets a read pass a write
FILTER_BITS = 1 << 23  # 1 MB of bits: about 1% false positives at 800k keys
FILTER_HASHES = 4
FAILURE_LOG_EVERY_S = 60.0  # seconds between warnings while the disk keeps failing (a full disk)
# What a full or failing disk raises through diskcache: SQLite's errors, the OS's, diskcache's lock timeout.
DISK_ERRORS = (sqlite3.Error, OSError, diskcache.Timeout)


class KeyFilter:
    """A Bloom filter of the keys on disk, so that a miss costs no thread hop.

    False positives only cost a disk lookup; there are no false negatives for keys
    this process wrote or found at start (entries culled or expired by diskcache
    stay "maybe" until the filter is rebuilt on clear or restart)."""

    def __init__(self, bits: int = FILTER_BITS) -> None:
        self.bits = bits
        self._array = bytearray(bits // 8)
        self.ready = False  # until the start-up scan is done, everything is "maybe"

    def _positions(self, key: str) -> list[int]:
        d = hashlib.blake2b(key.encode(), digest_size=4 * FILTER_HASHES).digest()
        return [int.from_bytes(d[i : i + 4], "little") % self.bits for i in range(0, 4 * FILTER_HASHES, 4)]

    def add(self, key: str) -> None:
        for p in self._positions(key):
            self._array[p >> 3] |= 1 << (p & 7)

    def maybe(self, key: str) -> bool:
        if not self.ready:
            return True
        return all(self._array[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    def reset(self) -> None:
        self._array = bytearray(self.bits // 8)


class DiskTier:
    name = "disk"

    def __init__(self, directory: Path, max_bytes: int, codec: Codec) -> None:
        self.directory = directory
        self.codec = codec
        self.max_bytes = max_bytes
        private_dir(directory)
        self._pool = ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="disk-cache")
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=max(max_bytes, 1),
            eviction_policy="least-recently-used",
            statistics=False,
            # Entries are small: keep them all inside SQLite so one transaction covers each.
            disk_min_file_size=1 << 30,
        )
        private_tree(directory)  # cache.db and files from older versions; SQLite copies the mode to -wal/-shm
        self.st = TierStats(self.name, max_bytes=max_bytes)
        self._failure_logged_at = -FAILURE_LOG_EVERY_S
        self.filter = KeyFilter()
        self._pool.submit(self._load_filter)

    def _load_filter(self) -> None:
        # Runs once on the disk thread at start; writes that race with it are added too.
        for key in self._cache.iterkeys():
            self.filter.add(key)
        self.filter.ready = True

    async def _run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kw))

    async def _guarded(self, fn: Any, *args: Any, write: bool = False, **kw: Any) -> tuple[bool, Any]:
        """(True, result), or (False, None) when the disk failed: the tier is then marked
        degraded (status shows why), warned about once a minute, and tried again on the
        next call; the next successful write (reads work on a full disk too) marks it
        available again, so it recovers by itself when space is freed."""
        try:
            result = await self._run(fn, *args, **kw)
        except DISK_ERRORS as exc:
            self._failed(exc)
            return False, None
        if write and not self.st.available:
            self.st.available = True
            self.st.error = ""
            log.info("disk cache tier %s is working again", self.directory)
        return True, result

    def _failed(self, exc: BaseException) -> None:
        self.st.available = False
        self.st.failures += 1
        self.st.error = escape_controls(f"{type(exc).__name__}: {exc}")
        now = time.monotonic()
        if now - self._failure_logged_at >= FAILURE_LOG_EVERY_S:
            self._failure_logged_at = now
            log.warning(
                "disk cache tier degraded (%s; %d failures): answers are still served, the disk is retried on "
                "every write",
                self.st.error,
                self.st.failures,
            )

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
        if not self.filter.maybe(key):
            self.st.misses += 1
            return None
        _, entry = await self._guarded(self._get_blocking, key)
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
        maybe = [k for k in keys if self.filter.maybe(k)]
        found: dict[str, Entry] = (await self._guarded(self.get_many_blocking, maybe))[1] or {} if maybe else {}
        self.st.hits += len(found)
        self.st.misses += len(keys) - len(found)
        return found

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        if self.max_bytes <= 0:
            return
        raw = entry.encoded()
        if len(raw) > MAX_ENTRY_BYTES:
            return  # no reader would accept it
        data = self.codec.pack(raw)
        self.filter.add(key)
        ok, _ = await self._guarded(self._cache.set, key, data, write=True, expire=ttl_s)
        if ok:
            self.st.writes += 1

    def set_many_blocking(self, items: list[tuple[str, Entry]], ttl_s: float) -> None:
        # One transaction for a batch (embedding re-index writes hundreds at once).
        with self._cache.transact():
            for key, entry in items:
                raw = entry.encoded()
                if len(raw) <= MAX_ENTRY_BYTES:
                    self._cache.set(key, self.codec.pack(raw), expire=ttl_s)

    async def set_many(self, items: list[tuple[str, Entry]], ttl_s: float) -> None:
        if self.max_bytes <= 0 or not items:
            return
        for key, _ in items:
            self.filter.add(key)
        ok, _ = await self._guarded(self.set_many_blocking, items, ttl_s, write=True)
        if ok:
            self.st.writes += len(items)

    async def delete(self, key: str) -> None:
        await self._run(self._cache.delete, key)

    async def clear(self) -> int:
        n: int = await self._run(self._cache.clear)
        self.filter.reset()
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

        ok, figures = await self._guarded(read)
        if ok:
            self.st.entries, self.st.bytes = figures
        self.st.enabled = self.max_bytes > 0
        return self.st

    async def aclose(self) -> None:
        await self._run(self._cache.close)
        self._pool.shutdown(wait=True)
