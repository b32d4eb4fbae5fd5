"""Preemption on the simulated Ollama: a suggestion pauses a streaming chat, the chat resumes
as a continuation and its client sees one answer, identical to the un-paused one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.config import UpstreamSettings
from agent.journey import preempt
from agent.journey.flights import Flights
from agent.journey.preempt import PauseState, resumable
from agent.upstreams.pool import make_upstream
from agent.upstreams.scheduling import AUTOCOMPLETE, BULK
from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"
NO_PREFETCH = '[profiles.balanced]\nprefetch = "off"\n'
TOKENS = 60


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    # one runner for every model, a token every 40 ms: a 60-token answer takes ~2.4 s
    with SimServer(SimOllama(token_delay_s=0.04, one_slot=True)) as srv:
        yield srv


def chat_body(temperature: float = 0, tokens: int = TOKENS) -> dict[str, Any]:
    return {
        "model": SMALL,
        "messages": [{"role": "user", "content": "explain the scheduler"}],
        "options": {"temperature": temperature, "seed": 7, "num_predict": tokens, "repeat_penalty": 1},
    }


def stream_chat(url: str, body: dict[str, Any], out: list[dict[str, Any]]) -> threading.Thread:
    def run() -> None:
        with httpx.stream("POST", url + "/api/chat", json=dict(body, stream=True), timeout=60) as r:
            for line in r.iter_lines():
                if line:
                    out.append(json.loads(line))

    t = threading.Thread(target=run)
    t.start()
    return t


def suggest(url: str, prompt: str = "def f(") -> httpx.Response:
    body = {"model": SMALL, "prompt": prompt, "suffix": "\n", "stream": False, "options": {"num_predict": 3}}
    return httpx.post(url + "/api/generate", json=body, timeout=30)


def text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c.get("message", {}).get("content", "") for c in chunks)


def direct(sim: SimServer, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(sim.url + "/api/chat", json=dict(body, stream=False), timeout=60)
    return dict(r.json())


def chat_entries(sim: SimServer) -> list[Any]:
    return [e for e in sim.sim.inference_log() if e.path == "/api/chat"]


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0, 0.8], ids=["cached-flight", "uncached-forward"])
def test_a_suggestion_pauses_a_streaming_chat_which_resumes_seamlessly(
    slow_sim: SimServer, make_gateway: GatewayFactory, temperature: float
) -> None:
    gw = make_gateway(slow_sim.url, profile="balanced", config=NO_PREFETCH)
    body = chat_body(temperature)
    chunks: list[dict[str, Any]] = []
    t = stream_chat(gw.url, body, chunks)
    assert wait_for(lambda: len(chunks) >= 5, timeout=10)
    r = suggest(gw.url)
    assert r.status_code == 200
    got_at = len(chunks)
    t.join()
    assert got_at < TOKENS  # the suggestion was answered while the chat still had a long way to go
    # one answer, nothing repeated, nothing lost: the same as the un-paused answer (seed fixed)
    expected = direct(slow_sim, body)
    assert text(chunks) == expected["message"]["content"]
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == expected["done_reason"] == "length"
    assert final["eval_count"] == TOKENS  # summed over both parts
    assert sum(1 for c in chunks if c.get("done")) == 1
    # the server saw: the chat, the suggestion, the chat's continuation (trailing assistant message)
    calls = [e for e in slow_sim.sim.inference_log() if e.path in ("/api/chat", "/api/generate")]
    paths = [e.path for e in calls[:3]]
    assert paths == ["/api/chat", "/api/generate", "/api/chat"], paths
    first, resumed = calls[0], calls[2]
    assert first.cancelled
    assert resumed.body["messages"][-1]["role"] == "assistant"
    delivered = TOKENS - resumed.body["options"]["num_predict"]  # what the client had at the pause
    assert 0 < delivered <= first.tokens  # a token still in the pipe is dropped, never sent twice
    assert resumed.body["messages"][-1]["content"] == text(chunks[:delivered])
    status = httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]["preemption"]
    assert status["enabled"] is True and status["paused"] == 1 and status["resumed"] == 1
    assert status["paused_s"] > 0


async def test_raw_generate_resumes_with_prompt_plus_partial_output(slow_sim: SimServer) -> None:
    # Raw generate is routed as a suggestion unless a lane fixes a lower class (e.g. bulk work
    # behind /lane/bulk): the flight and scheduler are driven directly here, with that class.
    upstream = make_upstream(UpstreamSettings(url=slow_sim.url))
    upstream.scheduler.preempt_enabled = lambda: True
    flights = Flights()
    body = {
        "model": SMALL,
        "prompt": "Once upon a time",
        "raw": True,
        "stream": True,
        "options": {"temperature": 0, "num_predict": 50, "repeat_penalty": 1},
    }
    assert resumable(upstream.kind, "/api/generate", body)
    f = flights.start(
        "k",
        "generate",
        SMALL,
        upstream,
        "/api/generate",
        body,
        {},
        priority=BULK,
        pause=PauseState("/api/generate", body),
    )
    f.join()
    got: list[bytes] = []

    async def follow() -> None:
        async for part in f.stream(True):
            got.append(part)

    follower = asyncio.ensure_future(follow())
    while sum(p.count(b"\n") for p in got) < 5:
        await asyncio.sleep(0.02)
    async with upstream.scheduler.slot(AUTOCOMPLETE):
        r = await upstream.infer("/api/generate", {"model": SMALL, "prompt": "x = ", "stream": False}, {}, stream=False)
        assert r.status_code == 200
        served_while = sum(p.count(b"\n") for p in got)
    await follower
    chunks = [json.loads(line) for line in b"".join(got).splitlines() if line]
    assert served_while < 50
    expected = httpx.post(slow_sim.url + "/api/generate", json=dict(body, stream=False), timeout=60).json()
    assert "".join(c.get("response", "") for c in chunks) == expected["response"]
    assert chunks[-1]["eval_count"] == 50 and chunks[-1]["done_reason"] == "length"
    gens = [e for e in slow_sim.sim.inference_log() if e.body.get("raw")]
    delivered = 50 - gens[1].body["options"]["num_predict"]
    assert gens[0].cancelled and 0 < delivered <= gens[0].tokens
    assert gens[1].body["prompt"] == "Once upon a time" + "".join(c.get("response", "") for c in chunks[:delivered])
    assert upstream.scheduler.stats.paused == 1 and upstream.scheduler.stats.resumed == 1
    await upstream.aclose()


def test_resumable_kinds() -> None:
    chat: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    # reproducible answers only without repetition penalties (they look back over generated tokens)
    assert not resumable("ollama", "/api/chat", dict(chat, options={"temperature": 0}))
    assert not resumable("ollama", "/api/chat", dict(chat, options={"seed": 1, "repeat_penalty": 1.1}))
    assert resumable("ollama", "/api/chat", dict(chat, options={"temperature": 0, "repeat_penalty": 1}))
    assert not resumable(
        "ollama", "/api/chat", dict(chat, options={"seed": 1, "repeat_penalty": 1, "presence_penalty": 1})
    )
    assert resumable("ollama", "/api/chat", dict(chat, options={"temperature": 0.8}))  # a sampled answer
    assert resumable("ollama", "/api/chat", chat)
    assert not resumable("ollama", "/api/chat", dict(chat, format="json"))  # a grammar from the start
    assert not resumable("ollama", "/api/chat", dict(chat, tools=[{"type": "function"}]))
    assert not resumable("ollama", "/api/generate", {"prompt": "x"})  # templated: no way to continue
    assert resumable("ollama", "/api/generate", {"prompt": "x", "raw": True})
    assert not resumable("ollama", "/v1/chat/completions", chat)
    assert not resumable("openai", "/api/chat", chat)  # llama-cpp-python starts a new turn
    assert not resumable("llamacpp", "/api/chat", chat)
    assert resumable("llamacpp", "/api/generate", {"prompt": "x"})  # a plain /v1/completions there
    assert not resumable("llamacpp", "/api/generate", {"prompt": "x", "suffix": "y"})  # FIM


def test_no_pause_when_the_profile_turns_it_off(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url, profile="balanced", config=NO_PREFETCH + "preempt = false\n")
    chunks: list[dict[str, Any]] = []
    t = stream_chat(gw.url, chat_body(), chunks)
    assert wait_for(lambda: len(chunks) >= 5, timeout=10)
    assert suggest(gw.url).status_code == 200
    after = len(chunks)
    t.join()
    assert after >= TOKENS  # the suggestion waited for the whole chat
    assert len(chat_entries(slow_sim)) == 1
    assert httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]["preemption"]["paused"] == 0


def test_no_pause_near_the_end_of_an_answer(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url, profile="balanced", config=NO_PREFETCH)
    chunks: list[dict[str, Any]] = []
    t = stream_chat(gw.url, chat_body(tokens=20), chunks)  # 20 tokens: < 1 s left after the 5th
    assert wait_for(lambda: len(chunks) >= 5, timeout=10)
    assert suggest(gw.url).status_code == 200
    t.join()
    assert len(chat_entries(slow_sim)) == 1 and not chat_entries(slow_sim)[0].cancelled


def test_at_most_two_resumes_per_answer(
    slow_sim: SimServer, make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preempt, "MIN_INTERVAL_S", 0.0)
    gw = make_gateway(slow_sim.url, profile="balanced", config=NO_PREFETCH)
    body = chat_body(tokens=80)
    chunks: list[dict[str, Any]] = []
    t = stream_chat(gw.url, body, chunks)
    for i in range(3):
        n = len(chunks)
        assert wait_for(lambda n=n: len(chunks) >= n + 3, timeout=10)
        assert suggest(gw.url, f"x{i} = ").status_code == 200
    assert len(chunks) == 81  # the third suggestion waited for the end: no third pause
    t.join()
    assert len(chat_entries(slow_sim)) == 3  # the first part and two resumes
    assert text(chunks) == direct(slow_sim, body)["message"]["content"]
    assert chunks[-1]["eval_count"] == 80


def test_a_client_that_leaves_while_paused_stops_everything(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url, profile="balanced", config=NO_PREFETCH)
    stop = threading.Event()
    seen: list[bytes] = []

    def run() -> None:
        with httpx.stream("POST", gw.url + "/api/chat", json=dict(chat_body(), stream=True), timeout=60) as r:
            for line in r.iter_lines():
                seen.append(line.encode())
                if stop.is_set():
                    return

    th = threading.Thread(target=run)
    th.start()
    assert wait_for(lambda: len(seen) >= 5, timeout=10)
    stop.set()
    assert suggest(gw.url).status_code == 200
    th.join()
    time.sleep(0.5)
    # the flight noticed nobody is listening: no generation goes on for nobody
    assert wait_for(lambda: len(gw.runtime.flights) == 0 and gw.runtime.upstreams.primary.scheduler.idle, timeout=5)
    assert all(e.finished for e in slow_sim.sim.inference_log())
