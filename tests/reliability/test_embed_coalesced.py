"""Item 10: coalesced embeddings. When the client that started an upstream embedding
call leaves, the others waiting for the same inputs still get their answer."""

from __future__ import annotations

import threading

import httpx

from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

LOAD_S = 1.5  # the embedding model's load time: the first client leaves during it


def test_first_client_leaves_the_follower_gets_the_vectors(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(load_time_s=LOAD_S)) as sim:
        gw = make_gateway(sim.url)
        body = {"model": "nomic-embed-text", "input": ["shared text", "other text"]}
        started = threading.Event()

        def impatient() -> None:
            started.set()
            try:
                httpx.post(gw.url + "/api/embed", json=body, timeout=LOAD_S / 3, trust_env=False)
            except httpx.TimeoutException:
                pass  # the editor gave up: its connection is closed

        t = threading.Thread(target=impatient)
        t.start()
        assert started.wait(10)
        assert wait_for(lambda: len(gw.runtime.embed_pending) == 2, timeout=10)
        with gw.client() as c:
            r = c.post("/api/embed", json=body)
        t.join(10)
        assert r.status_code == 200, r.text
        assert r.headers["x-powergate-cache"] == "coalesced"
        assert len(r.json()["embeddings"]) == 2
        calls = [e for e in sim.sim.inference_log() if e.path == "/api/embed"]
        assert len(calls) == 1  # one upstream call served both
        # and the answer was stored for next time
        with gw.client() as c:
            again = c.post("/api/embed", json=body)
        assert again.headers["x-powergate-cache"] == "hit-memory"


def test_the_only_client_leaving_stops_the_upstream_call(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(load_time_s=LOAD_S)) as sim:
        gw = make_gateway(sim.url)
        body = {"model": "nomic-embed-text", "input": ["alone"]}
        try:
            httpx.post(gw.url + "/api/embed", json=body, timeout=LOAD_S / 3, trust_env=False)
        except httpx.TimeoutException:
            pass
        assert wait_for(lambda: not gw.runtime.embed_pending, timeout=10)
        # the call was dropped, not finished for nobody: once Ollama would have answered,
        # nothing was stored and the same request is a miss
        assert wait_for(lambda: all(e.finished for e in sim.sim.log if e.path == "/api/embed"), timeout=10)
        with gw.client() as c:
            r = c.post("/api/embed", json=body)
        assert r.status_code == 200 and r.headers["x-powergate-cache"] == "miss"
