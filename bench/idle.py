"""Scenario: the agent's own cost with no traffic, per profile: CPU percent of one
core, wake-ups (context switches) per minute and resident memory, without the tray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil

from bench.harness import powergate

PROFILES = ("performance", "balanced", "battery-saver")


def context_switches(proc: psutil.Process) -> int:
    """Voluntary + involuntary context switches of every thread (psutil's
    num_ctx_switches reads only the main thread's on Linux)."""
    task_dir = Path(f"/proc/{proc.pid}/task")
    if task_dir.is_dir():
        total = 0
        for status in task_dir.glob("*/status"):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            except OSError:
                continue  # a thread ended
        return total
    c = proc.num_ctx_switches()
    return int(c.voluntary + c.involuntary)


def measure(upstream: str, profile: str, seconds: float, settle: float = 3.0) -> dict[str, Any]:
    with powergate(upstream, profile=profile) as pg:
        proc = psutil.Process(pg.proc.pid)
        time.sleep(settle)
        t0 = proc.cpu_times()
        c0 = context_switches(proc)
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        t1 = proc.cpu_times()
        c1 = context_switches(proc)
        rss = proc.memory_info().rss
        threads = proc.num_threads()
    cpu_s = (t1.user - t0.user) + (t1.system - t0.system)
    switches = c1 - c0
    return {
        "profile": profile,
        "seconds": round(elapsed, 1),
        "cpu_percent_of_one_core": round(100 * cpu_s / elapsed, 3),
        "wakeups_per_minute": round(switches * 60 / elapsed, 1),
        "rss_mb": round(rss / 1024 / 1024, 1),
        "threads": threads,
    }


def run(upstream: str, seconds: float) -> list[dict[str, Any]]:
    """The three profiles side by side (idle agents barely disturb each other), so a
    one-minute measurement each takes one minute in all."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(PROFILES)) as pool:
        return list(pool.map(lambda p: measure(upstream, p, seconds), PROFILES))
