"""Lanes: /lane/{autocomplete,chat,bulk}/ serve the gateway API with a fixed priority class."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    with SimServer(SimOllama(token_delay_s=0.02, default_tokens=10)) as srv:
        yield srv


def post(url: str, body: dict[str, Any], out: list[Any], name: str) -> threading.Thread:
    def run() -> None:
        r = httpx.post(url, json=body, timeout=60, trust_env=False)
        out.append((name, r.status_code))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_every_api_works_under_a_lane(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, profile="battery-saver")
    with gw.client() as c:
        for lane in ("autocomplete", "chat", "bulk"):
            assert c.get(f"/lane/{lane}/api/tags").json()["models"]
            r = c.post(f"/lane/{lane}/api/embed", json={"model": "embed", "input": ["x"]})
            assert r.status_code == 200 and len(r.json()["embeddings"]) == 1
            r = c.post(
                f"/lane/{lane}/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": lane}]},
            )
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        r = c.post("/lane/bogus/api/chat", json={"model": SMALL, "messages": []})
        assert r.status_code == 404 and "unknown lane" in r.json()["error"]
        r = c.post("/lane/bulk/api/nothing-here", json={})
        assert r.status_code == 404
    # the lane prefix never reaches Ollama
    assert all(not e.path.startswith("/lane") for e in sim.sim.log)


def test_the_ollama_client_keeps_the_lane_path_in_its_host(sim: SimServer, make_gateway: GatewayFactory) -> None:
    """LightRAG's Ollama binding builds ollama.AsyncClient(host=LLM_BINDING_HOST): a path must survive."""
    import ollama

    gw = make_gateway(sim.url, profile="battery-saver")
    client = ollama.Client(host=f"{gw.url}/lane/bulk")
    try:
        got = client.chat(model=SMALL, messages=[{"role": "user", "content": "extract FACT-lane1"}])
        assert "FACT-lane1" in got["message"]["content"]
        assert client.embed(model="embed", input=["a", "b"])["embeddings"]
    finally:
        client._client.close()
    chats = [e for e in sim.sim.inference_log() if e.path == "/api/chat"]
    assert chats and chats[-1].headers.get("user-agent", "").startswith("ollama-python")


def test_suggestions_in_their_lane_overtake_bulk_work(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url, profile="battery-saver")
    out: list[Any] = []
    # a long chat holds Ollama's one slot, bulk work queues behind it
    hold = post(
        gw.url + "/api/chat",
        {
            "model": SMALL,
            "messages": [{"role": "user", "content": "hold"}],
            "options": {"num_predict": 60},
            "stream": False,
        },
        out,
        "hold",
    )
    assert wait_for(lambda: bool(slow_sim.sim.inference_log()), timeout=10)
    bulk = [
        post(
            gw.url + "/lane/bulk/api/chat",
            {"model": SMALL, "messages": [{"role": "user", "content": f"extract {i}"}], "stream": False},
            out,
            f"bulk{i}",
        )
        for i in range(3)
    ]
    assert wait_for(lambda: len(gw.runtime.upstreams.primary.scheduler.waiting) == 3, timeout=10)
    # the same model and API as the bulk calls: only the lane says it is a suggestion
    ac = post(
        gw.url + "/lane/autocomplete/api/chat",
        {"model": SMALL, "messages": [{"role": "user", "content": "complete"}], "stream": False},
        out,
        "ac",
    )
    for t in [hold, *bulk, ac]:
        t.join(60)
    assert all(status == 200 for _, status in out), out
    started = [e.body["messages"][0]["content"] for e in sorted(slow_sim.sim.inference_log(), key=lambda e: e.started)]
    assert started[0] == "hold"
    assert started[1] == "complete", started  # ahead of the three bulk calls that queued first


def test_bulk_lane_caches_chat_that_editors_would_not(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, profile="battery-saver")
    body = {"model": SMALL, "messages": [{"role": "user", "content": "extract entities from: text"}], "stream": False}
    with gw.client() as c:
        outcomes = [c.post("/lane/bulk/api/chat", json=body).headers["x-powergate-cache"] for _ in range(2)]
        assert outcomes == ["miss", "hit-memory"]
        # outside the lane, a chat without temperature 0 or a seed is not cached ([cache] chat = deterministic)
        plain = [c.post("/api/chat", json=body).headers["x-powergate-cache"] for _ in range(2)]
        assert plain == ["bypass", "bypass"]
        # Cache-Control still rules inside the lane
        r = c.post("/lane/bulk/api/chat", json=body, headers={"Cache-Control": "no-cache"})
        assert r.headers["x-powergate-cache"] == "miss"
