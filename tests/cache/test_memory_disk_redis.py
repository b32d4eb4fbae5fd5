"""What each tier promises beyond the contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import diskcache

from agent.cache.base import Entry
from agent.cache.codec import Codec, make_codec
from agent.cache.disk import DiskTier
from agent.cache.memory import KEY_OVERHEAD, MemoryTier
from agent.cache.redis import RedisTier
from tests.conftest import ROOT, RedisServer, free_port


def entry(n: int, size: int = 1000) -> Entry:
    return Entry("generate", "m", [b'{"response":"' + b"x" * size + str(n).encode() + b'","done":true}'])


async def test_memory_is_lru_bounded_by_bytes_and_resizes_at_once() -> None:
    one = entry(0).footprint + len("k0") + KEY_OVERHEAD + 2  # what the tier really holds per entry
    m = MemoryTier(one * 10 + 50)  # created timestamps vary the size by a byte or two
    for i in range(10):
        m.set_now(f"k{i}", entry(i), 60)
    assert m.get_now("k0") is not None  # k0 is now the most recently used
    m.set_now("k10", entry(10), 60)
    assert m.get_now("k1") is None and m.get_now("k0") is not None
    st = await m.stats()
    assert st.bytes <= one * 10 + 50 and st.evictions == 1
    await m.resize(one * 3 + 50)
    st = await m.stats()
    assert st.entries == 3 and st.bytes <= one * 3 + 50
    assert m.get_now("k0") is not None  # most recently used survives a shrink


async def test_disk_survives_restart_and_is_compressed(tmp_path: Path) -> None:
    d = DiskTier(tmp_path / "c", 10 << 20, Codec())
    big = entry(1, size=50_000)
    await d.set("k", big, 60)
    await d.aclose()
    d2 = DiskTier(tmp_path / "c", 10 << 20, Codec())
    got = await d2.get("k")
    assert got is not None and got.chunks == big.chunks
    st = await d2.stats()
    assert st.bytes < 50_000  # zlib: a run of x compresses to almost nothing
    await d2.aclose()


async def test_encrypted_entries_hold_no_plaintext(tmp_path: Path) -> None:
    codec = make_codec(True, tmp_path / "cfg" / "cache.key")
    if os.name == "posix":
        assert (tmp_path / "cfg" / "cache.key").stat().st_mode & 0o077 == 0
    d = DiskTier(tmp_path / "c", 10 << 20, codec)
    secret = Entry("generate", "m", [b'{"response":"TOP_SECRET_ALGORITHM","done":true}'])
    await d.set("k", secret, 60)
    assert (await d.get("k")) is not None
    await d.aclose()
    raw = diskcache.Cache(str(tmp_path / "c")).get("k")
    assert b"TOP_SECRET" not in raw
    for f in (tmp_path / "c").rglob("*"):
        if f.is_file():
            assert b"TOP_SECRET" not in f.read_bytes()
    # a different key cannot read it, and the entry is dropped instead of failing
    other = DiskTier(tmp_path / "c", 10 << 20, make_codec(True, tmp_path / "other.key"))
    assert await other.get("k") is None
    await other.aclose()


WRITER = """
import sys, asyncio
sys.path.insert(0, {root!r})
from agent.cache.disk import DiskTier
from agent.cache.codec import Codec
from agent.cache.base import Entry
d = DiskTier(__import__('pathlib').Path({path!r}), 100 << 20, Codec())
i = 0
while True:
    d._cache.set(f"k{{i}}", d.codec.pack(Entry("generate", "m", [b'{{"response":"' + str(i).encode() * 2000 + b'","done":true}}']).encoded()))
    if i == 50:
        print("writing", flush=True)
    i += 1
"""


async def test_disk_survives_kill_9_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    if hasattr(signal, "SIGKILL"):
        os.kill(proc.pid, signal.SIGKILL)
    else:  # pragma: no cover - Windows
        proc.kill()
    proc.wait()
    proc.stdout.close()
    d = DiskTier(path, 100 << 20, Codec())
    n = (await d.stats()).entries
    assert n > 50
    # every entry that is there is whole: the last one written is either complete or absent
    for i in range(n):
        e = await d.get(f"k{i}")
        assert e is not None and e.chunks[0].endswith(b'","done":true}')
    await d.set("after", entry(1), 60)
    assert await d.get("after") is not None
    await d.aclose()


async def test_redis_down_is_skipped_quickly_and_reported() -> None:
    t = RedisTier(f"redis://127.0.0.1:{free_port()}/0", Codec(), "team-key")
    t0 = time.monotonic()
    assert await t.get("k") is None
    await t.set("k", entry(1), 60)
    assert time.monotonic() - t0 < 1.0
    st = await t.stats()
    assert st.available is False and st.error
    await t.aclose()


async def test_redis_recovers_after_coming_back(redis_server: RedisServer) -> None:
    t = RedisTier(redis_server.url, Codec(), "team-key")
    await t.set("k", entry(1), 60)
    assert await t.get("k") is not None
    redis_server.stop()
    assert await t.get("k") is None and not (await t.stats()).available
    redis_server.start()
    t._down_until = 0  # the back-off period has passed
    await t.set("k2", entry(2), 60)
    assert await t.get("k2") is not None and (await t.stats()).available
    await t.aclose()
