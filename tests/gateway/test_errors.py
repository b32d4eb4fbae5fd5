"""Bad input and faults: clear errors in the API's own format, never a 500."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory, closed_port_url

SMALL = "qwen2.5-coder:1.5b"

BAD_BODIES = [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"", "missing request body"),
    (b'{"model": 5, "prompt": "x"}', "'model'"),
    (b'{"model": "m", "prompt": 5}', "'prompt'"),
    (b'{"model": "m", "prompt": "x", "options": []}', "'options'"),
    (b'{"model": "m", "prompt": "x", "stream": "yes"}', "'stream'"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_bad_generate_bodies_get_400(gateway: Gateway, body: bytes, words: str) -> None:
    r = httpx.post(gateway.url + "/api/generate", content=body, timeout=10)
    assert r.status_code == 400
    assert words in r.json()["error"]
    assert r.headers["x-powergate-cache"] == "bypass"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"model": SMALL, "messages": "hi"}),
        ("/api/chat", {"model": SMALL, "messages": [{"role": 5, "content": "a role must be a string"}]}),
        ("/api/embed", {"model": "nomic-embed-text", "input": [1, 2]}),
        ("/api/embeddings", {"model": "nomic-embed-text", "prompt": ["x"]}),
        ("/v1/completions", {"model": SMALL, "prompt": ["Ollama takes one string"]}),
        ("/v1/embeddings", {"model": "nomic-embed-text"}),
        ("/v1/chat/completions", {"model": SMALL, "messages": [], "temperature": "hot"}),
    ],
)
def test_wrong_types_get_400_in_each_format(gateway: Gateway, path: str, body: dict) -> None:
    r = httpx.post(gateway.url + path, json=body, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    if path.startswith("/v1/"):
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    else:
        assert isinstance(err, str) and err


def test_body_over_limit_gets_413(sim, make_gateway: GatewayFactory) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway(sim.url, config="[server]\nmax_body_mb = 0.01\n")
    big = b'{"model": "m", "prompt": "' + b"x" * 20_000 + b'"}'
    r = httpx.post(gw.url + "/api/generate", content=big, timeout=10)
    assert r.status_code == 413 and "max_body_mb" in r.json()["error"]

    def chunks():  # type: ignore[no-untyped-def]
        yield big[:10_000]
        yield big[10_000:]

    r2 = httpx.post(gw.url + "/v1/completions", content=chunks(), timeout=10)
    assert r2.status_code == 413 and "message" in r2.json()["error"]
    assert (
        httpx.post(
            gw.url + "/api/generate", json={"model": SMALL, "prompt": "ok", "stream": False}, timeout=10
        ).status_code
        == 200
    )


def test_ollama_not_running_answers_fast_with_the_url(make_gateway: GatewayFactory) -> None:
    down = closed_port_url()
    gw = make_gateway(down)
    t0 = time.monotonic()
    r = httpx.post(gw.url + "/api/generate", json={"model": SMALL, "prompt": "x"}, timeout=10)
    assert time.monotonic() - t0 < 4.0  # refused at once on loopback; never the 600 s read timeout
    assert r.status_code == 502
    assert down in r.json()["error"] and "ollama serve" in r.json()["error"]
    r2 = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": SMALL, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert r2.status_code == 502 and down in r2.json()["error"]["message"]
    assert httpx.get(gw.url + "/api/tags", timeout=10).status_code == 502
    assert httpx.get(gw.url + "/", timeout=10).text.startswith("Ollama is running")
    status = httpx.get(gw.url + "/agent/status", timeout=10).json()
    assert status["upstreams"][0]["reachable"] is False


def test_unknown_paths_and_methods(gateway: Gateway) -> None:
    r = httpx.get(gateway.url + "/nothing-here", timeout=10)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(gateway.url + "/api/generate", timeout=10)
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(gateway.url + "/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and "message" in r.json()["error"]


def test_every_answer_carries_the_headers(gateway: Gateway) -> None:
    with gateway.client() as c:
        for method, path, body in [
            ("GET", "/", None),
            ("GET", "/api/version", None),
            ("GET", "/api/tags", None),
            ("GET", "/api/ps", None),
            ("POST", "/api/show", {"model": SMALL}),
            ("POST", "/api/generate", {"model": SMALL, "prompt": "x", "stream": False}),
            ("POST", "/api/generate", {"model": "nope", "prompt": "x"}),
            ("GET", "/v1/models", None),
            ("GET", "/agent/status", None),
            ("GET", "/missing", None),
        ]:
            r = c.request(method, path, json=body)
            for h in ("x-powergate-cache", "x-powergate-model", "x-powergate-profile"):
                assert h in r.headers, (path, h)
