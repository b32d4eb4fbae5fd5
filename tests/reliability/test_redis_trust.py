"""Item 8: a shared Redis is not trusted blindly. Values carry an HMAC under the team key
([cache] redis_key); forged, foreign or oversized values are ignored and counted."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import pytest
import redis

from agent.cache.base import Entry
from agent.cache.codec import MAX_ENTRY_BYTES, Codec
from agent.cache.redis import KEY_PREFIX, RedisTier
from agent.config import load_settings
from agent.errors import CacheError, ConfigError
from tests.conftest import GatewayFactory, RedisServer
from tests.simollama import SimServer

pytestmark = pytest.mark.redis

BODY = {"model": "qwen2.5-coder:1.5b", "prompt": "def secret():", "stream": False, "options": {"temperature": 0}}


def config(url: str, key: str) -> str:
    return f'[cache]\nredis_url = "{url}"\nredis_key = "{key}"\n'


def test_redis_url_without_a_team_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[cache]\nredis_url = "redis://127.0.0.1:6379/0"\n')
    with pytest.raises(ConfigError, match=r"cache\.redis_key"):
        load_settings(config_file=cfg)


def test_a_forged_value_is_not_served(sim: SimServer, make_gateway: GatewayFactory, redis_server: RedisServer) -> None:
    writer = make_gateway(sim.url, config=config(redis_server.url, "team-secret"))
    with writer.client() as c:
        real = c.post("/api/generate", json=BODY)
    assert real.status_code == 200
    r = redis.Redis.from_url(redis_server.url)
    assert writer.runtime is not None
    keys = [k for k in r.scan_iter(match=KEY_PREFIX + "*")]
    assert keys, "the answer reached Redis"
    # an attacker who can write to Redis but has no team key replaces every value
    for k in keys:
        forged = Entry("generate", "qwen2.5-coder:1.5b", [b'{"response":"rm -rf ~","done":true}'])
        r.set(k, Codec().pack(forged.encoded()))
        r.set(k + b"x", b"junk")
    reader = make_gateway(sim.url, config=config(redis_server.url, "team-secret"))
    with reader.client() as c:
        again = c.post("/api/generate", json=BODY)
    assert again.status_code == 200
    assert again.headers["x-powergate-cache"] != "hit-redis"
    assert "rm -rf" not in again.text and again.json()["response"] == real.json()["response"]
    assert reader.runtime.cache.redis.st.rejected >= 1


def test_another_team_key_reads_nothing(
    sim: SimServer, make_gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    a = make_gateway(sim.url, config=config(redis_server.url, "team-a"))
    with a.client() as c:
        assert c.post("/api/generate", json=BODY).status_code == 200
    same_team = make_gateway(sim.url, config=config(redis_server.url, "team-a"))
    with same_team.client() as c:
        assert c.post("/api/generate", json=BODY).headers["x-powergate-cache"] == "hit-redis"
    b = make_gateway(sim.url, config=config(redis_server.url, "team-b"))
    with b.client() as c:
        r = c.post("/api/generate", json=BODY)
    assert r.headers["x-powergate-cache"] == "miss"
    assert b.runtime.cache.redis.st.rejected >= 1


def test_decompression_stops_at_the_entry_limit() -> None:
    bomb = zlib.compress(b"\n" * (8 * MAX_ENTRY_BYTES), 9)  # about 64 KB that would inflate to 64 MB
    assert len(bomb) < MAX_ENTRY_BYTES // 16
    tracemalloc.start()
    try:
        with pytest.raises(CacheError, match="more than"):
            Codec().unpack(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MAX_ENTRY_BYTES + (1 << 20)


async def test_a_sealed_bomb_is_rejected_by_the_tier(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, Codec(), "team")
    bomb = zlib.compress(b"\n" * (4 * MAX_ENTRY_BYTES), 9)
    await tier._client.set(KEY_PREFIX + "k", tier.seal("k", bomb))
    assert await tier.get("k") is None
    assert tier.st.rejected == 1
    # a value moved under another key fails too (the key is inside the HMAC)
    good = Entry("generate", "m", [b'{"response":"ok","done":true}'])
    await tier.set("k2", good, 60)
    raw = await tier._client.get(KEY_PREFIX + "k2")
    await tier._client.set(KEY_PREFIX + "k3", raw)
    assert (await tier.get("k2")) is not None and await tier.get("k3") is None
    assert tier.st.rejected == 2
    await tier.aclose()
