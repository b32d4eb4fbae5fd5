"""Scenario: what the gateway adds on a request it cannot answer from cache (a miss),
and the time to the first streamed byte, against a direct call to the simulated Ollama."""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.harness import interleave, summary_ms

MODEL = "qwen2.5-coder:1.5b"


def _timed_post(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    r = client.post(url, json=body)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return dt


def _timed_first_byte(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    dt = float("nan")
    with client.stream("POST", url, json=body) as r:
        for _ in r.iter_raw():
            if dt != dt:  # first chunk
                dt = time.perf_counter() - t0
    return dt


def run(direct: str, gateway: str, n: int) -> dict[str, Any]:
    with httpx.Client(timeout=30, trust_env=False) as c:
        # A unique prompt per call: every request is a real miss (lookup + forward + store).
        def body(tag: str, i: int, stream: bool) -> dict[str, Any]:
            return {
                "model": MODEL,
                "prompt": f"miss {tag} {i} {time.perf_counter_ns()}",
                "stream": stream,
                "options": {"num_predict": 8},
            }

        miss = interleave(
            n,
            {
                "direct": lambda i: _timed_post(c, direct + "/api/generate", body("d", i, False)),
                "powergate": lambda i: _timed_post(c, gateway + "/api/generate", body("g", i, False)),
            },
        )
        ttfb = interleave(
            max(50, n // 4),
            {
                "direct": lambda i: _timed_first_byte(c, direct + "/api/generate", body("ds", i, True)),
                "powergate": lambda i: _timed_first_byte(c, gateway + "/api/generate", body("gs", i, True)),
            },
        )
    res = {
        "miss": {k: summary_ms(v) for k, v in miss.items()},
        "ttfb": {k: summary_ms(v) for k, v in ttfb.items()},
    }
    for key in ("miss", "ttfb"):
        d, g = res[key]["direct"], res[key]["powergate"]
        res[key]["added_p50_ms"] = round(g["p50_ms"] - d["p50_ms"], 3)
        res[key]["added_p99_ms"] = round(g["p99_ms"] - d["p99_ms"], 3)
    return res
