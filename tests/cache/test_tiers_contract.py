"""Every cache tier passes the same contract, through one parametrized fixture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agent.cache.base import CacheTier, Entry
from agent.cache.codec import Codec, make_codec
from agent.cache.disk import DiskTier
from agent.cache.memory import MemoryTier
from agent.cache.redis import RedisTier
from tests.conftest import RedisServer

MB = 1024 * 1024


def entry(text: str = "hello") -> Entry:
    return Entry(
        "generate", "m", [b'{"response":"' + text.encode() + b'","done":false}', b'{"response":"","done":true}']
    )


@pytest_asyncio.fixture(params=["memory", "disk", "redis", "disk-encrypted", "redis-encrypted"])
async def tier(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheTier]:
    kind = request.param
    codec = make_codec(True, tmp_path / "k.key") if kind.endswith("encrypted") else Codec()
    srv = None
    t: CacheTier
    if kind == "memory":
        t = MemoryTier(16 * MB)
    elif kind.startswith("disk"):
        t = DiskTier(tmp_path / "disk", 16 * MB, codec)
    else:
        srv = RedisServer()
        t = RedisTier(srv.url, codec, "team-key")
    yield t
    await t.aclose()
    if srv is not None:
        srv.stop()


async def test_roundtrip_and_miss(tier: CacheTier) -> None:
    assert await tier.get("absent") is None
    await tier.set("k", entry("abc"), 60)
    got = await tier.get("k")
    assert got is not None and got.chunks == entry("abc").chunks and got.api == "generate"
    st = await tier.stats()
    assert st.hits == 1 and st.misses == 1 and st.entries == 1


async def test_ttl_expires(tier: CacheTier) -> None:
    await tier.set("short", entry(), 1)
    await tier.set("long", entry(), 60)
    await asyncio.sleep(1.6)
    assert await tier.get("short") is None
    assert await tier.get("long") is not None


async def test_delete_and_clear(tier: CacheTier) -> None:
    for i in range(5):
        await tier.set(f"k{i}", entry(str(i)), 60)
    await tier.delete("k0")
    assert await tier.get("k0") is None
    assert await tier.clear() >= 4
    assert all([await tier.get(f"k{i}") is None for i in range(5)])
    assert (await tier.stats()).entries == 0


async def test_overwrite_keeps_latest(tier: CacheTier) -> None:
    await tier.set("k", entry("one"), 60)
    await tier.set("k", entry("two"), 60)
    got = await tier.get("k")
    assert got is not None and b"two" in got.chunks[0]
