"""Start the contenders as separate processes on loopback, so that the benchmark
client, the gateway and the simulated Ollama never share one interpreter's GIL."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Proc:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextmanager
def sim_ollama(
    realistic: bool = False, *, module: str = "tests.simollama", flags: Sequence[str] = ()
) -> Iterator[Proc]:
    """A simulated Ollama (`python -m MODULE --port P FLAGS`) on a free port, once it answers."""
    port = free_port()
    args = [sys.executable, "-m", module, "--port", str(port), *(["--realistic"] if realistic else []), *flags]
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = Proc(f"http://127.0.0.1:{port}", p)
    try:
        wait_http(proc.url)
        yield proc
    finally:
        proc.stop()


@contextmanager
def powergate(
    upstream: str, config: str = "", profile: str = "performance", data_dir: Path | None = None
) -> Iterator[Proc]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as d:
        cfg = Path(d) / "config.toml"
        cfg.write_text(config)
        env = dict(os.environ, POWERGATE_DATA_DIR=str(data_dir or Path(d) / "data"), POWERGATE_CONFIG=str(cfg))
        args = [
            sys.executable,
            "-m",
            "agent",
            "run",
            "--no-tray",
            "--port",
            str(port),
            "--upstream",
            upstream,
            "--profile",
            profile,
        ]
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = Proc(f"http://127.0.0.1:{port}", p)
        try:
            wait_http(proc.url + "/agent/status")
            yield proc
        finally:
            proc.stop()


def pct(values: list[float], q: float) -> float:
    """The agent's own percentile, NaN for no samples (so tables print and JSON carries it)."""
    v = percentile(values, q)
    return float("nan") if v is None else v


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p95_ms": round(pct(values, 95) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3) if values else float("nan"),
    }


def interleave(n: int, contenders: dict[str, Callable[[int], float]], warmup: int = 20) -> dict[str, list[float]]:
    """Run each contender's call i in turn (a, b, a, b, ...) so noise hits all alike."""
    for i in range(warmup):
        for fn in contenders.values():
            fn(-1 - i)
    out: dict[str, list[float]] = {k: [] for k in contenders}
    for i in range(n):
        for name, fn in contenders.items():
            out[name].append(fn(i))
    return out
