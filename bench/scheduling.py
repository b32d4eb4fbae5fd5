"""Scenarios on a realistic simulated Ollama (~30 ms per token, ~2 s model load, one
slot for every model, like a laptop where one runner fits):

1. autocomplete latency while a chat client and an embedding indexer keep Ollama
   busy, direct vs through powergate, alternating phases in one run;
2. an editing session (typing, accepting suggestions, pauses) through powergate
   with and without speculative prefetch: share of suggestions under 100 ms;
3. upstream work avoided: requests dropped because their client left first.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from bench.harness import pct, summary_ms

SMALL = "qwen2.5-coder:1.5b"
KEYSTROKE_S = 0.5  # an editor asks for a suggestion at most this often while typing


async def _background(client: httpx.AsyncClient, base: str, stop: asyncio.Event) -> dict[str, int]:
    counts = {"chat": 0, "embed": 0}

    async def chat_loop() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await client.post(
                    base + "/api/chat",
                    json={
                        "model": SMALL,
                        "stream": False,
                        "options": {"num_predict": 40},
                        "messages": [{"role": "user", "content": f"explain step {i} {time.time_ns()}"}],
                    },
                )
                counts["chat"] += 1
            except httpx.HTTPError:
                pass

    async def embed_loop() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await client.post(
                    base + "/api/embed",
                    json={"model": "nomic-embed-text", "input": [f"chunk {i}-{j} {time.time_ns()}" for j in range(64)]},
                )
                counts["embed"] += 1
            except httpx.HTTPError:
                pass

    await asyncio.gather(chat_loop(), embed_loop())
    return counts


async def _typing(client: httpx.AsyncClient, base: str, seconds: float) -> dict[str, Any]:
    """An editor: a new completion request every keystroke pause, aborting the previous one."""
    latencies: list[float] = []
    aborted = 0
    pending: asyncio.Task[Any] | None = None
    prefix = "def handler(request):\n    "
    end = time.monotonic() + seconds

    async def ask(prompt: str) -> None:
        t0 = time.perf_counter()
        r = await client.post(
            base + "/api/generate",
            json={"model": SMALL, "prompt": prompt, "suffix": "\n", "stream": False, "options": {"num_predict": 8}},
        )
        if r.status_code == 200:
            latencies.append(time.perf_counter() - t0)

    n = 0
    while time.monotonic() < end:
        if pending is not None and not pending.done():
            pending.cancel()  # the user typed on: the editor drops the old request
            aborted += 1
        n += 1
        prefix += random.choice("abcdefgh")
        pending = asyncio.ensure_future(ask(prefix + f"  # {time.time_ns()}"))
        await asyncio.sleep(KEYSTROKE_S)
    if pending is not None:
        try:
            await asyncio.wait_for(pending, 30)
        except (asyncio.TimeoutError, httpx.HTTPError):
            pass
    return {"requests": n, "answered": len(latencies), "aborted": aborted, "latencies": latencies}


async def _phase(base: str, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=60, trust_env=False, limits=httpx.Limits(max_connections=50)) as c:
        await c.post(
            base + "/api/generate",
            json={"model": SMALL, "prompt": "warm", "stream": False, "options": {"num_predict": 1}},
        )
        bg = asyncio.ensure_future(_background(c, base, stop))
        await asyncio.sleep(1.0)
        fg = await _typing(c, base, seconds)
        stop.set()
        counts = await bg
    fg["background"] = counts
    return fg


def under_load(direct: str, gateway: str, seconds: float, rounds: int = 2) -> dict[str, Any]:
    random.seed(11)
    lat: dict[str, list[float]] = {"direct": [], "powergate": []}
    info: dict[str, dict[str, int]] = {
        "direct": {"requests": 0, "answered": 0, "aborted": 0},
        "powergate": {"requests": 0, "answered": 0, "aborted": 0},
    }
    for _ in range(rounds):
        for name, base in (("direct", direct), ("powergate", gateway)):
            r = asyncio.run(_phase(base, seconds / rounds))
            lat[name] += r["latencies"]
            for k in ("requests", "answered", "aborted"):
                info[name][k] += r[k]
    out: dict[str, Any] = {name: dict(summary_ms(v), **info[name]) for name, v in lat.items()}
    d, g = out["direct"]["p95_ms"], out["powergate"]["p95_ms"]
    out["p95_ratio_direct_over_powergate"] = round(d / g, 2) if g else None
    st = httpx.get(gateway + "/agent/status", timeout=10, trust_env=False).json()["scheduling"]
    out["avoided"] = {"dropped_before_upstream": st["dropped_before_upstream"], "superseded": st["superseded"]}
    return out


SESSION_PAUSES = (0.6, 2.5)  # seconds the user reads a suggestion before acting


async def _session(base: str, steps: int, seed: int, pauses: tuple[float, float] = SESSION_PAUSES) -> dict[str, Any]:
    """Accept the whole suggestion (Tab) 70% of the time, type along 1-3 of its
    characters 20%, type something of one's own 10%; pause between actions."""
    rng = random.Random(seed)
    prompt = f"# session {seed} {time.time_ns()}\nimport os\n\n"
    lat: list[float] = []
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=60, trust_env=False) as c:
        suggestion = ""
        for _ in range(steps):
            roll = rng.random()
            if suggestion and roll < 0.7:
                prompt += suggestion
            elif suggestion and roll < 0.9:
                prompt += suggestion[: rng.randint(1, min(3, len(suggestion)))]
            else:
                prompt += rng.choice(["x = ", "def f(", "return ", "if y:\n    "])
            t0 = time.perf_counter()
            r = await c.post(
                base + "/api/generate",
                json={
                    "model": "autocomplete",
                    "prompt": prompt,
                    "suffix": "\n",
                    "stream": False,
                    "options": {"num_predict": 8, "temperature": 0},
                },
            )
            lat.append(time.perf_counter() - t0)
            o = r.headers.get("x-powergate-cache", "?")
            outcomes[o] = outcomes.get(o, 0) + 1
            suggestion = r.json().get("response", "")
            await asyncio.sleep(rng.uniform(*pauses))
    return {"latencies": lat, "outcomes": outcomes}


def editing_session(gateway_with: str, gateway_without: str, steps: int, quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pauses = (0.4, 0.6) if quick else SESSION_PAUSES
    for name, base in (("with_prefetch", gateway_with), ("without_prefetch", gateway_without)):
        r = asyncio.run(_session(base, steps, seed=5, pauses=pauses))
        lat = r["latencies"]
        out[name] = {
            "suggestions": len(lat),
            "under_100ms": round(sum(1 for x in lat if x < 0.1) / len(lat), 3),
            "p50_ms": round(pct(lat, 50) * 1000, 1),
            "p95_ms": round(pct(lat, 95) * 1000, 1),
            "outcomes": r["outcomes"],
        }
    return out
