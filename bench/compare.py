"""Scenarios with LiteLLM proxy as a third contender, through the OpenAI API both
gateways speak: cache hits, miss overhead, first streamed byte, cached throughput
with 16 concurrent clients, and an embedding re-index."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import interleave, summary_ms
from bench.litellm import AUTH
from bench.overhead import _timed_first_byte, _timed_post

MODEL = "qwen2.5-coder:1.5b"
EMBED = "nomic-embed-text"
CONCURRENCY = 16


def _chat(prompt: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 12,
        "stream": stream,
    }


def _post(c: httpx.Client, url: str, body: dict[str, Any]) -> float:
    return _timed_post(c, url, body)


def _first_byte(c: httpx.Client, url: str, body: dict[str, Any]) -> float:
    return _timed_first_byte(c, url, body)


def latency(direct: str, powergate: str, litellm: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(timeout=60, trust_env=False, headers=AUTH) as c:
        cached = _chat("what does a context manager do?")
        for base in (powergate, litellm):
            c.post(base + "/v1/chat/completions", json=cached)
        res = interleave(
            n,
            {
                "direct": lambda i: _post(c, direct + "/v1/chat/completions", cached),
                "powergate": lambda i: _post(c, powergate + "/v1/chat/completions", cached),
                "litellm": lambda i: _post(c, litellm + "/v1/chat/completions", cached),
            },
            warmup=10,
        )
        out["hit"] = {k: summary_ms(v) for k, v in res.items()}
        res = interleave(
            max(50, n // 2),
            {
                "direct": lambda i: _post(c, direct + "/v1/chat/completions", _chat(f"d{i} {time.perf_counter_ns()}")),
                "powergate": lambda i: _post(
                    c, powergate + "/v1/chat/completions", _chat(f"p{i} {time.perf_counter_ns()}")
                ),
                "litellm": lambda i: _post(
                    c, litellm + "/v1/chat/completions", _chat(f"l{i} {time.perf_counter_ns()}")
                ),
            },
            warmup=5,
        )
        out["miss"] = {k: summary_ms(v) for k, v in res.items()}
        res = interleave(
            max(30, n // 4),
            {
                "direct": lambda i: _first_byte(
                    c, direct + "/v1/chat/completions", _chat(f"sd{i} {time.perf_counter_ns()}", True)
                ),
                "powergate": lambda i: _first_byte(
                    c, powergate + "/v1/chat/completions", _chat(f"sp{i} {time.perf_counter_ns()}", True)
                ),
                "litellm": lambda i: _first_byte(
                    c, litellm + "/v1/chat/completions", _chat(f"sl{i} {time.perf_counter_ns()}", True)
                ),
            },
            warmup=5,
        )
        out["ttfb"] = {k: summary_ms(v) for k, v in res.items()}
    for key in ("hit", "miss", "ttfb"):
        s = out[key]
        s["powergate_minus_direct_p50_ms"] = round(s["powergate"]["p50_ms"] - s["direct"]["p50_ms"], 3)
        s["litellm_over_powergate_p50"] = round(s["litellm"]["p50_ms"] / s["powergate"]["p50_ms"], 1)
    return out


WRK_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-powergate-bench"
"""


def _wrk(url: str, body: dict[str, Any], seconds: int) -> float | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "post.lua"
        script.write_text(WRK_LUA.replace("{body}", json.dumps(body).replace("'", "\\'")))
        r = subprocess.run(
            [exe, "-t", "2", "-c", str(CONCURRENCY), "-d", f"{seconds}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
    for line in r.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


async def _async_throughput(url: str, body: dict[str, Any], seconds: float) -> float:
    done = 0
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(
        timeout=30, trust_env=False, headers=AUTH, limits=httpx.Limits(max_connections=CONCURRENCY)
    ) as c:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                r = await c.post(url, json=body)
                if r.status_code == 200:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / seconds


def throughput(powergate: str, litellm: str, seconds: int) -> dict[str, Any]:
    """Cached answers per second with 16 concurrent clients (wrk when installed)."""
    body = _chat("cached throughput")
    with httpx.Client(timeout=30, trust_env=False, headers=AUTH) as c:
        for base in (powergate, litellm):
            c.post(base + "/v1/chat/completions", json=body)
            c.post(base + "/v1/chat/completions", json=body)
    out: dict[str, Any] = {"clients": CONCURRENCY, "tool": "wrk" if shutil.which("wrk") else "python asyncio client"}
    for name, base in (("powergate", powergate), ("litellm", litellm)):
        rps = _wrk(base + "/v1/chat/completions", body, seconds)
        if rps is None:
            rps = asyncio.run(_async_throughput(base + "/v1/chat/completions", body, seconds))
        out[name] = round(rps, 1)
    out["powergate_over_litellm"] = round(out["powergate"] / out["litellm"], 1) if out["litellm"] else None
    return out


def reindex(direct: str, powergate: str, litellm: str, chunks: int, batch: int = 32) -> dict[str, Any]:
    texts = [f"chunk {i}: def handler_{i}(request):\n    return respond({i})" for i in range(chunks)]
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]

    def run(base: str, c: httpx.Client) -> float:
        t0 = time.perf_counter()
        for b in batches:
            r = c.post(base + "/v1/embeddings", json={"model": EMBED, "input": b})
            if r.status_code != 200:
                raise RuntimeError(f"{base}: {r.status_code} {r.text[:200]}")
        return time.perf_counter() - t0

    out: dict[str, Any] = {"chunks": chunks}
    with httpx.Client(timeout=300, trust_env=False, headers=AUTH) as c:
        out["direct_s"] = round(run(direct, c), 3)
        for name, base in (("powergate", powergate), ("litellm", litellm)):
            out[f"{name}_first_pass_s"] = round(run(base, c), 3)
            out[f"{name}_second_pass_s"] = round(run(base, c), 3)
    out["powergate_speedup"] = round(out["direct_s"] / out["powergate_second_pass_s"], 1)
    out["litellm_speedup"] = round(out["direct_s"] / out["litellm_second_pass_s"], 1)
    return out
