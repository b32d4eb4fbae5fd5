"""Redis tier: the shared cache of a team or of several machines.

Redis is optional and may vanish at any moment: every call has a short timeout,
and after a failure the tier stays out of the way for a back-off period, so no
request ever waits on (or fails because of) an absent Redis."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agent.cache.base import Entry, TierStats
from agent.cache.codec import MAX_ENTRY_BYTES, Codec
from agent.errors import CacheError

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.25  # seconds per operation; a LAN Redis answers in about a millisecond
RETRY_AFTER = 10.0  # seconds the tier rests after a failure
KEY_PREFIX = "powergate:v1:"
COUNT_EVERY_S = 60.0  # seconds between SCANs that count our keys: the dashboard polls every few seconds
# Every value carries an HMAC-SHA256 of its key and bytes under the team key ([cache]
# redis_key): anyone who can write to the shared Redis but lacks the key cannot forge an
# answer or move a real one under another request's key.
SEAL = b"pg1"
MAC_BYTES = 32
REJECT_LOG_EVERY_S = 60.0  # seconds between warnings about values that fail the check


class RedisTier:
    name = "redis"

    def __init__(self, url: str, codec: Codec, key: str | bytes) -> None:
        self.url = url
        self.codec = codec
        self._key = key.encode() if isinstance(key, str) else key
        self._rejected_logged_at = -REJECT_LOG_EVERY_S
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry_on_timeout=False,
            health_check_interval=30,
        )
        self._down_until = 0.0
        self._counted_at = -COUNT_EVERY_S  # never counted yet
        self.st = TierStats(self.name, available=False, error="not checked yet")

    # ------------------------------------------------------------ authentication
    def _mac(self, key: str, packed: bytes) -> bytes:
        msg = KEY_PREFIX.encode() + key.encode() + b"\0" + packed
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def seal(self, key: str, packed: bytes) -> bytes:
        return SEAL + self._mac(key, packed) + packed

    def _decode(self, key: str, raw: bytes | str) -> Entry | None:
        """The entry stored under `key`, or None (counted) if it fails the check."""
        data = raw if isinstance(raw, bytes) else raw.encode()
        head, mac, packed = data[: len(SEAL)], data[len(SEAL) : len(SEAL) + MAC_BYTES], data[len(SEAL) + MAC_BYTES :]
        if head != SEAL or not hmac.compare_digest(mac, self._mac(key, packed)):
            self._reject("its HMAC does not match the team key ([cache] redis_key)")
            return None
        try:
            return Entry.decode(self.codec.unpack(packed, MAX_ENTRY_BYTES))
        except (CacheError, ValueError, KeyError) as exc:
            # Same key, another encryption key or version: not ours to read.
            self._reject(str(exc))
            return None

    def _reject(self, why: str) -> None:
        self.st.rejected += 1
        now = time.monotonic()
        if now - self._rejected_logged_at >= REJECT_LOG_EVERY_S:
            self._rejected_logged_at = now
            log.warning("ignoring redis cache values that fail the check (%s); %d so far", why, self.st.rejected)

    @property
    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if self.st.available or self.st.error == "not checked yet":
            log.warning(
                "redis cache tier %s unavailable (%s); serving from the other tiers", self.url, type(exc).__name__
            )
        self.st.available = False
        self.st.error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + RETRY_AFTER

    def _ok(self) -> None:
        if not self.st.available:
            log.info("redis cache tier %s is available", self.url)
        self.st.available = True
        self.st.error = ""

    async def ping(self) -> bool:
        try:
            await self._client.ping()
            self._ok()
            return True
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False

    async def get(self, key: str) -> Entry | None:
        if not self.usable:
            return None
        try:
            raw = await self._client.get(KEY_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._ok()
        if raw is None:
            self.st.misses += 1
            return None
        entry = self._decode(key, raw)
        if entry is None:
            self.st.misses += 1
            return None
        self.st.hits += 1
        return entry

    async def get_many(self, keys: list[str]) -> dict[str, Entry]:
        if not self.usable or not keys:
            return {}
        try:
            raws = await self._client.mget([KEY_PREFIX + k for k in keys])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return {}
        self._ok()
        out = {}
        for k, raw in zip(keys, raws, strict=True):
            if raw is None:
                continue
            entry = self._decode(k, raw)
            if entry is not None:
                out[k] = entry
        self.st.hits += len(out)
        self.st.misses += len(keys) - len(out)
        return out

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        await self.set_many([(key, entry)], ttl_s)

    async def set_many(self, items: list[tuple[str, Entry]], ttl_s: float) -> None:
        if not self.usable or not items:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, entry in items:
                    raw = entry.encoded()
                    if len(raw) > MAX_ENTRY_BYTES:
                        continue  # no reader would accept it
                    pipe.set(KEY_PREFIX + key, self.seal(key, self.codec.pack(raw)), ex=max(1, int(ttl_s)))
                await pipe.execute()
            self._ok()
            self.st.writes += len(items)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def delete(self, key: str) -> None:
        if self.usable:
            try:
                await self._client.delete(KEY_PREFIX + key)
            except (RedisError, OSError) as exc:
                self._failed(exc)

    async def clear(self) -> int:
        n = 0
        try:
            async for k in self._client.scan_iter(match=KEY_PREFIX + "*", count=500):
                await self._client.unlink(k)
                n += 1
            self._counted_at = -COUNT_EVERY_S  # count afresh at the next stats()
            self._ok()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        return n

    async def resize(self, max_bytes: int) -> None:
        # Redis is bounded by its own maxmemory policy, shared by the team.
        pass

    async def stats(self) -> TierStats:
        # Counting means a SCAN over a Redis the whole team shares: do it at most once a
        # minute (and after a clear), not on every dashboard or Prometheus poll.
        if self.usable and time.monotonic() - self._counted_at >= COUNT_EVERY_S:
            try:
                n = 0
                async for _ in self._client.scan_iter(match=KEY_PREFIX + "*", count=1000):
                    n += 1
                self.st.entries = n
                info = await self._client.info("memory")
                self.st.bytes = int(info.get("used_memory", 0))
                self._counted_at = time.monotonic()
                self._ok()
            except (RedisError, OSError) as exc:
                self._failed(exc)
        return self.st

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass
