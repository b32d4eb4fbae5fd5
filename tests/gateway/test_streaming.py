"""Streams pass through as they arrive; an aborted client stops the upstream at once."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"


@pytest.fixture
def slow_sim() -> SimServer:
    srv = SimServer(SimOllama(token_delay_s=0.05, default_tokens=40)).start()
    yield srv  # type: ignore[misc]
    srv.stop()


def test_ndjson_content_type_exact_and_chunks_arrive_before_the_end(
    slow_sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(slow_sim.url)
    with (
        httpx.Client(timeout=30) as c,
        c.stream("POST", gw.url + "/api/generate", json={"model": SMALL, "prompt": "x"}) as r,
    ):
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["x-powergate-model"] == SMALL
        lines = r.iter_lines()
        first = json.loads(next(lines))
        # The first token is here while the simulated Ollama is still generating the rest.
        entry = slow_sim.sim.inference_log()[-1]
        assert first["done"] is False and entry.finished is None
        rest = [json.loads(x) for x in lines if x]
    assert rest[-1]["done"] is True and len(rest) == 40


def test_aborted_stream_stops_upstream_generation(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url)
    with (
        httpx.Client(timeout=30) as c,
        c.stream("POST", gw.url + "/api/generate", json={"model": SMALL, "prompt": "abort me"}) as r,
    ):
        next(r.iter_lines())
    # The editor went away after one token: the gateway must close its upstream request
    # so that Ollama stops well before the 40 tokens (2 s) it would otherwise produce.
    entry = slow_sim.sim.inference_log()[-1]
    assert wait_for(lambda: entry.finished is not None, timeout=1.5)
    assert entry.cancelled and entry.tokens < 20


def test_aborted_whole_request_stops_upstream(slow_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(slow_sim.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + "/api/generate", json={"model": SMALL, "prompt": "y", "stream": False}, timeout=0.3)
    entry = slow_sim.sim.inference_log()[-1]
    assert wait_for(lambda: entry.finished is not None, timeout=1.5)
    assert entry.cancelled and entry.tokens < 30


def test_upstream_sees_its_own_host_and_pooled_connections(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url)
    with gw.client() as c:
        for _ in range(5):
            assert c.post("/api/generate", json={"model": SMALL, "prompt": "h", "stream": False}).status_code == 200
    hosts = {e.headers.get("host") for e in sim.sim.inference_log()}
    assert hosts == {f"127.0.0.1:{sim.port}"}
    pool = gw.runtime.upstreams.primary.client._transport._pool
    # kept alive and reused, not one per request (the model warm-up may open a second one)
    assert len(pool.connections) <= 2


def test_stream_error_status_relayed(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url)
    sim.sim.fail_next.append((503, "server busy, please try again.  maximum pending requests exceeded"))
    r = httpx.post(
        gw.url + "/api/chat", json={"model": SMALL, "messages": [{"role": "user", "content": "x"}]}, timeout=10
    )
    assert r.status_code == 503 and "server busy" in r.json()["error"]
    assert r.headers["x-powergate-cache"] == "bypass"
