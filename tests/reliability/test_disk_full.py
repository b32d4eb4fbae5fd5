"""Item 12: a full disk marks the disk tier degraded (in status), is logged once a
minute without tracebacks, never fails a request, and the tier recovers by itself.

The agent runs in its own process with a real file-size limit (RLIMIT_FSIZE): its
SQLite writes fail as on a full disk. Raising the limit again (prlimit) is the disk
being freed."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.conftest import AgentProcess, AgentProcessFactory, stop_agent, wait_for
from tests.simollama import SimServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE + prlimit: Linux"),
]
FSIZE_LIMIT = 1 << 19  # bytes any file of the agent may reach: the "disk"
ANSWER_TOKENS = 8000  # about 50 KB per answer: the database passes the limit after a few dozen


@pytest.fixture
def small_disk_agent(sim: SimServer, make_agent_process: AgentProcessFactory) -> AgentProcess:
    import resource

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))

    return make_agent_process(sim.url, preexec_fn=small_disk)


def disk_tier(c: httpx.Client) -> dict[str, object]:
    tiers = c.get("/agent/status").json()["cache"]["tiers"]
    return next(t for t in tiers if t["name"] == "disk")


def test_full_disk_degrades_then_recovers(small_disk_agent: AgentProcess) -> None:
    import resource

    url, proc, data = small_disk_agent.url, small_disk_agent.proc, small_disk_agent.data_dir
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
        for i in range(200):
            body = {
                "model": "qwen2.5-coder:1.5b",
                "prompt": f"long {i}",
                "stream": False,
                "options": {"num_predict": ANSWER_TOKENS, "temperature": 0},
            }
            assert c.post("/api/generate", json=body).status_code == 200  # never fails a request
            if not disk_tier(c)["available"]:
                break
        assert wait_for(lambda: disk_tier(c)["available"] is False, timeout=10)
        degraded = disk_tier(c)
        assert degraded["error"] and degraded["failures"] >= 1
        # more failing writes within the minute: still one warning
        for i in range(5):
            c.post(
                "/api/generate",
                json={
                    "model": "qwen2.5-coder:1.5b",
                    "prompt": f"more {i}",
                    "stream": False,
                    "options": {"num_predict": ANSWER_TOKENS, "temperature": 0},
                },
            )
        assert wait_for(lambda: int(disk_tier(c)["failures"]) > int(degraded["failures"]), timeout=10)
        # space is freed: the next write succeeds and the tier is back
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert (
            c.post(
                "/api/generate", json={"model": "qwen2.5-coder:1.5b", "prompt": "after", "stream": False}
            ).status_code
            == 200
        )
        assert wait_for(lambda: disk_tier(c)["available"] is True, timeout=10)
    err = stop_agent(proc)
    log = (data / "logs" / "powergate.log").read_text()
    assert log.count("disk cache tier degraded") == 1, log[-3000:]
    assert "working again" in log
    assert "Traceback" not in log and "Traceback" not in err, (log + err)[-3000:]
