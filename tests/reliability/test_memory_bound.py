"""Item 7: the memory tier keeps its bound. An agent process answers hundreds of
distinct ~50 KB answers, each replayed as a stream and whole; its resident memory
(psutil) stays within memory_mb + 100 MB, and within the smaller bound after a switch
to a profile with less memory (a shrink gives the memory back)."""

from __future__ import annotations

import httpx
import psutil
import pytest

from tests.conftest import AgentProcessFactory, wait_for
from tests.simollama import SimServer

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
BIG_MB = 32  # memory_mb of the profile we start in
SMALL_MB = 8  # memory_mb of the profile we switch down to
HEADROOM_MB = 100  # the promise: RSS <= memory_mb + 100 MB (the interpreter and libraries included)
ANSWERS = 900  # distinct answers: with the old accounting they filled 4x the budget
TOKENS = 12_000  # about 50 KB of text per answer


@pytest.fixture
def agent(sim: SimServer, make_agent_process: AgentProcessFactory) -> tuple[str, psutil.Process]:
    config = (
        f'[profiles.performance]\nmemory_mb = {BIG_MB}\nprefetch = "off"\n'
        f"[profiles.battery-saver]\nmemory_mb = {SMALL_MB}\n"
    )
    started = make_agent_process(sim.url, "--profile", "performance", config=config)
    return started.url, psutil.Process(started.proc.pid)


def test_rss_stays_within_memory_mb_plus_100(agent: tuple[str, psutil.Process]) -> None:
    url, process = agent
    peak = 0

    def sample() -> int:
        nonlocal peak
        rss = int(process.memory_info().rss)
        peak = max(peak, rss)
        return rss

    with httpx.Client(base_url=url, timeout=120, trust_env=False) as c:
        for i in range(ANSWERS):
            body = {
                "model": "qwen2.5-coder:1.5b",
                "prompt": f"answer #{i}#",
                "options": {"num_predict": TOKENS, "temperature": 0},
            }
            whole = c.post("/api/generate", json=dict(body, stream=False))
            assert whole.status_code == 200 and len(whole.content) > 40_000
            streamed = c.post("/api/generate", json=dict(body, stream=True))
            assert streamed.headers["x-powergate-cache"].startswith("hit"), streamed.headers
            again = c.post("/api/generate", json=dict(body, stream=False))
            assert again.headers["x-powergate-cache"].startswith("hit")
            if i % 25 == 0:
                sample()
        sample()
        status = c.get("/agent/status").json()
        memory = next(t for t in status["cache"]["tiers"] if t["name"] == "memory")
        assert memory["evictions"] > 0, "the test must overflow the tier"
        print(f"memory_mb={BIG_MB}: peak RSS {peak / MIB:.0f} MiB over {ANSWERS} answers")
        assert peak <= (BIG_MB + HEADROOM_MB) * MIB, f"peak RSS {peak / MIB:.0f} MiB"

        # switch down: the tier shrinks and the process gives the memory back
        assert c.put("/agent/profile", json={"profile": "battery-saver"}).status_code == 200
        assert wait_for(lambda: sample() <= (SMALL_MB + HEADROOM_MB) * MIB, timeout=20, interval=0.5), (
            f"RSS after the switch {sample() / MIB:.0f} MiB"
        )
        for i in range(50):  # and stays there while it keeps answering
            body = {
                "model": "qwen2.5-coder:1.5b",
                "prompt": f"small #{i}#",
                "options": {"num_predict": TOKENS, "temperature": 0},
            }
            c.post("/api/generate", json=dict(body, stream=False))
            c.post("/api/generate", json=dict(body, stream=True))
        after = sample()
        print(f"memory_mb={SMALL_MB} after the switch: RSS {after / MIB:.0f} MiB")
        assert after <= (SMALL_MB + HEADROOM_MB) * MIB, f"RSS {after / MIB:.0f} MiB"
