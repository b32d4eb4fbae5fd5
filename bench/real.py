"""`python -m bench --real`: an editing session typed over a real source file, against a
real model (llama-cpp-python's server with Gemma 3 270M), directly and through powergate
in each profile.

The file is a module of the Python standard library on this machine (not written by us).
A seeded typist walks through it: pauses every few characters at a word boundary and
asks for a suggestion (the last WINDOW characters, `num_predict` NUM_PREDICT); when the
suggestion matches what the file says next, it accepts the matching part (Tab), else it
types on. Every contender replays the same keystrokes; contenders take turns per round
(each round a new region of the file), so machine noise hits all alike.

Per contender: suggestion latency p50/p95 and share under 100 ms, suggestions shown, the
upstream generations and tokens the model server really ran (counted by a transparent
proxy in front of the server, prefetches included), and the model server's CPU-seconds
(psutil on its process) per suggestion shown: the battery cost of a suggestion.

Scenarios are functions of one `RealSetup`, so others can be added (e.g. chat while typing).
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bench import harness
from tests.real.server import MODEL_ALIAS, RealLlamaServer, free_port, model_file, real_config

SOURCE_MODULE = textwrap  # a real source file, not ours: the standard library's textwrap.py
WINDOW = 1000  # characters of context before the cursor sent with each suggestion request
NUM_PREDICT = 12  # tokens per suggestion
PAUSE_CHARS = (4, 14)  # the typist pauses for a suggestion every this many characters
MIN_ACCEPT = 3  # characters of a suggestion that must match the file for the typist to take it
UNDER_MS = 100.0
PROFILES = ("performance", "balanced", "battery-saver")
SETTLE_S = 1.0  # seconds after a contender's turn for background prefetches to end
CLIENT_TIMEOUT = 300.0  # seconds


@dataclass
class Counts:
    """What the model server really ran, as seen on the wire in front of it."""

    generations: int = 0
    tokens: int = 0
    cancelled: int = 0


@dataclass
class CountingProxy:
    """A transparent HTTP proxy in front of the model server that counts generations and tokens."""

    target: str
    port: int = field(default_factory=free_port)
    counts: Counts = field(default_factory=Counts)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        client = httpx.AsyncClient(base_url=self.target, timeout=CLIENT_TIMEOUT, trust_env=False)

        async def relay(request: Request) -> Response:
            body = await request.body()
            generating = request.method == "POST" and request.url.path.endswith("completions")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            upstream = await client.send(
                client.build_request(request.method, request.url.path, content=body, headers=headers), stream=True
            )
            if generating:
                self.counts.generations += 1

            # Relayed as it arrives: when the client leaves (an abort, a cancelled prefetch), the
            # relay is cancelled and closes its upstream request, as the client's own would have.
            async def chunks() -> AsyncIterator[bytes]:
                seen = b""
                finished = False
                try:
                    async for chunk in upstream.aiter_raw():
                        seen += chunk
                        yield chunk
                    finished = True
                finally:
                    await upstream.aclose()
                    if generating and upstream.status_code == 200:
                        self.counts.tokens += tokens_in(seen)
                        if not finished:
                            self.counts.cancelled += 1

            return StreamingResponse(
                chunks(), status_code=upstream.status_code, media_type=upstream.headers.get("content-type")
            )

        return Starlette(routes=[Route("/{path:path}", relay, methods=["GET", "POST"])])

    @contextmanager
    def running(self) -> Iterator[CountingProxy]:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        thread.start()
        harness.wait_http(self.url + "/v1/models", timeout=30)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(10)


def tokens_in(content: bytes) -> int:
    """Tokens generated in a whole answer (its usage) or an SSE stream (usage, else one per piece:
    llama-cpp-python streams a token per event and sends no usage in streams)."""
    try:
        return int(json.loads(content).get("usage", {}).get("completion_tokens") or 0)
    except (ValueError, AttributeError):
        pass
    pieces = usage = 0
    for line in content.splitlines():
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        try:
            doc = json.loads(line[5:])
        except ValueError:
            continue
        usage = int((doc.get("usage") or {}).get("completion_tokens") or usage)
        for c in doc.get("choices") or []:
            if c.get("text") or (c.get("delta") or {}).get("content"):
                pieces += 1
    return usage or pieces


@dataclass
class Contender:
    name: str
    url: str
    direct: bool  # talks OpenAI to the server itself; else Ollama's API to powergate
    proxy: CountingProxy
    latencies: list[float] = field(default_factory=list)
    shown: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0


def keystrokes(text: str, start: int, length: int, seed: int) -> list[int]:
    """Cursor positions where the typist pauses: word boundaries every few characters."""
    rng = random.Random(seed)
    out, p, end = [], start, min(len(text), start + length)
    while p < end:
        p += rng.randint(*PAUSE_CHARS)
        while p < end and text[p - 1].isalnum():
            p += 1
        out.append(min(p, end))
    return out


async def complete(
    c: httpx.AsyncClient, url: str, direct: bool, prompt: str, num_predict: int, timeout: float | None = None
) -> tuple[str, str]:
    """One suggestion, (text, outcome): from the server directly (OpenAI API), or through
    powergate (Ollama's API, a raw prompt as Continue and Twinny send it; the outcome is its
    X-Powergate-Cache). A timeout raises httpx.TimeoutException (the editor's abort)."""
    if direct:
        r = await c.post(
            url + "/v1/completions",
            json={"model": MODEL_ALIAS, "prompt": prompt, "max_tokens": num_predict, "temperature": 0},
            timeout=timeout,
        )
        return (str(r.json()["choices"][0]["text"]) if r.status_code == 200 else ""), "direct"
    r = await c.post(
        url + "/api/generate",
        json={
            "model": "autocomplete",
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": {"num_predict": num_predict, "temperature": 0},
        },
        timeout=timeout,
    )
    text = str(r.json().get("response", "")) if r.status_code == 200 else ""
    return text, r.headers.get("x-powergate-cache", str(r.status_code))


def accepted(suggestion: str, text: str, cursor: int) -> int:
    """Characters the typist takes with Tab: the suggestion as far as it matches the file."""
    match = 0
    while match < len(suggestion) and cursor + match < len(text) and suggestion[match] == text[cursor + match]:
        match += 1
    return match if match >= MIN_ACCEPT else 0


async def ask(c: httpx.AsyncClient, who: Contender, prompt: str) -> str:
    t0 = time.perf_counter()
    text, outcome = await complete(c, who.url, who.direct, prompt[-WINDOW:], NUM_PREDICT)
    who.latencies.append(time.perf_counter() - t0)
    who.outcomes[outcome] = who.outcomes.get(outcome, 0) + 1
    if text:
        who.shown += 1
    return text


async def type_region(who: Contender, text: str, start: int, length: int, seed: int) -> None:
    """Type the file from `start`, asking at each pause; accept suggestions that match the file."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        pauses = keystrokes(text, start, length, seed)
        cursor = start
        for p in pauses:
            if p <= cursor:
                continue
            cursor = p
            cursor += accepted(await ask(c, who, text[:cursor]), text, cursor)


def summary(who: Contender, counts: Counts) -> dict[str, Any]:
    lat_ms = [x * 1000 for x in who.latencies]
    n = len(lat_ms)
    return {
        "suggestions_asked": n,
        "suggestions_shown": who.shown,
        "p50_ms": round(harness.pct(lat_ms, 50), 1) if n else None,
        "p95_ms": round(harness.pct(lat_ms, 95), 1) if n else None,
        "under_100ms": round(sum(1 for x in lat_ms if x < UNDER_MS) / n, 3) if n else None,
        "upstream_generations": counts.generations,
        "upstream_tokens": counts.tokens,
        "upstream_cancelled": counts.cancelled,
        "server_cpu_s": round(who.cpu_s, 2),
        "server_cpu_s_per_shown": round(who.cpu_s / who.shown, 3) if who.shown else None,
        "outcomes": who.outcomes,
    }


def wait_idle(server: RealLlamaServer, settle_s: float = SETTLE_S, timeout: float = 120.0) -> None:
    """Until the server's CPU time stops growing (a background prefetch has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = server.cpu_seconds()
        time.sleep(settle_s)
        if server.cpu_seconds() - a < 0.05 * settle_s:
            return


def editing_session(rounds: int, region_chars: int) -> dict[str, Any]:
    """The scenario: direct vs powergate in each profile, interleaved by round."""
    source = Path(SOURCE_MODULE.__file__ or "")
    text = source.read_text(encoding="utf-8")
    with RealServerSession() as setup:
        contenders = setup.contenders()
        rng = random.Random(7)
        starts = [rng.randrange(WINDOW, max(WINDOW + 1, len(text) - region_chars)) for _ in range(rounds)]
        for i, start in enumerate(starts):
            order = contenders[i % len(contenders) :] + contenders[: i % len(contenders)]
            for who in order:
                wait_idle(setup.server)
                before_cpu = setup.server.cpu_seconds()
                asyncio.run(type_region(who, text, start, region_chars, seed=i))
                wait_idle(setup.server)  # its prefetches count towards its cost
                who.cpu_s += setup.server.cpu_seconds() - before_cpu
        out = {who.name: summary(who, who.proxy.counts) for who in contenders}
    return {
        "source": f"{SOURCE_MODULE.__name__} ({source.name}, Python standard library)",
        "model": "Gemma 3 270M Q4_K_M (llama-cpp-python server, 2 threads)",
        "rounds": rounds,
        "region_chars": region_chars,
        "contenders": out,
    }


class RealServerSession:
    """The real server, and per contender a counting proxy (and a powergate in one profile)."""

    def __init__(self) -> None:
        self._stack: list[Any] = []
        self.server: RealLlamaServer

    def __enter__(self) -> RealServerSession:
        self.server = RealLlamaServer(model_file())
        return self

    def contenders(self) -> list[Contender]:
        out = []
        for name in ("direct", *PROFILES):
            proxy = CountingProxy(self.server.url)
            cm = proxy.running()
            cm.__enter__()
            self._stack.append(cm)
            if name == "direct":
                out.append(Contender("direct", proxy.url, True, proxy))
                continue
            pg = harness.powergate(proxy.url, config=real_config(proxy.url), profile=name)
            proc = pg.__enter__()
            self._stack.append(pg)
            out.append(Contender(f"powergate {name}", proc.url, False, proxy))
        return out

    def __exit__(self, *exc: object) -> None:
        for cm in reversed(self._stack):
            cm.__exit__(None, None, None)
        self.server.stop()


def table(res: dict[str, Any]) -> str:
    rows = [
        "| contender | p50 / p95 ms | under 100 ms | shown / asked | upstream generations / tokens | server CPU-s per shown |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["contenders"].items():
        rows.append(
            f"| {name} | {r['p50_ms']} / {r['p95_ms']} | {r['under_100ms']:.0%} | {r['suggestions_shown']} / "
            f"{r['suggestions_asked']} | {r['upstream_generations']} / {r['upstream_tokens']} | {r['server_cpu_s_per_shown']} |"
        )
    return "\n".join(rows)


def run(quick: bool) -> dict[str, Any]:
    res = editing_session(rounds=1 if quick else 2, region_chars=120 if quick else 240)
    print(table(res))
    print(json.dumps({k: v["outcomes"] for k, v in res["contenders"].items()}))
    return res
