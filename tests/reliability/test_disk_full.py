"""Item 12: a full disk marks the disk tier degraded (in status), is logged once a
minute without tracebacks, never fails a request, and the tier recovers by itself.

The agent runs in its own process with a real file-size limit (RLIMIT_FSIZE): its
SQLite writes fail as on a full disk. Raising the limit again (prlimit) is the disk
being freed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, agent_up, free_port, stop_agent, wait_for
from tests.simollama import SimServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE + prlimit: Linux"),
]
FSIZE_LIMIT = 1 << 19  # bytes any file of the agent may reach: the "disk"
ANSWER_TOKENS = 8000  # about 50 KB per answer: the database passes the limit after a few dozen


@pytest.fixture
def small_disk_agent(tmp_path: Path, sim: SimServer) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    import resource

    port = free_port()
    power = tmp_path / "power.json"
    power.write_text('{"plugged": true, "percent": 100, "cpu_percent": 3}')
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n')
    data = tmp_path / "d"
    env = dict(os.environ, POWERGATE_PORT=str(port), POWERGATE_UPSTREAM=sim.url, POWERGATE_CONFIG=str(cfg))
    env["POWERGATE_DATA_DIR"] = str(data)

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))

    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--no-tray"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=small_disk,
    )
    assert wait_for(lambda: agent_up(port), timeout=30, interval=0.1), stop_agent(proc)
    yield f"http://127.0.0.1:{port}", proc, data
    stop_agent(proc)


def disk_tier(c: httpx.Client) -> dict[str, object]:
    tiers = c.get("/agent/status").json()["cache"]["tiers"]
    return next(t for t in tiers if t["name"] == "disk")


def test_full_disk_degrades_then_recovers(small_disk_agent: tuple[str, subprocess.Popen[str], Path]) -> None:
    import resource

    url, proc, data = small_disk_agent
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
