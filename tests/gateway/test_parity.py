"""Validation and HTTP parity with Ollama: the same request, the same status, directly and through powergate.

Each row runs against the simulated Ollama and through powergate. The `ollama` column is
the status Ollama's source gives (server/routes.go, middleware/openai.go, api/types.go);
the simulated Ollama must agree with it, and powergate with the simulated Ollama.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory, balanced_gateway_over_sim, closed_port_url
from tests.simollama import SimServer

SMALL = "qwen2.5-coder:1.5b"
EMBED = "nomic-embed-text"

# (id, path, body, Ollama's status)
PARITY: list[tuple[str, str, Any, int]] = [
    ("embed-empty-string", "/api/embed", {"model": EMBED, "input": ""}, 200),
    ("embed-empty-list", "/api/embed", {"model": EMBED, "input": []}, 200),
    ("embed-no-input", "/api/embed", {"model": EMBED}, 200),
    ("embed-unknown-model", "/api/embed", {"model": "nope", "input": "x"}, 404),
    ("embed-no-model", "/api/embed", {"input": "x"}, 404),
    ("embed-bad-input", "/api/embed", {"model": EMBED, "input": [1, 2]}, 400),
    ("keep-alive-banana", "/api/generate", {"model": SMALL, "prompt": "x", "keep_alive": "banana"}, 400),
    ("keep-alive-no-unit", "/api/chat", {"model": SMALL, "messages": [], "keep_alive": "10"}, 400),
    ("keep-alive-bool", "/api/embed", {"model": EMBED, "input": "x", "keep_alive": True}, 400),
    ("keep-alive-go-form", "/api/generate", {"model": SMALL, "prompt": "x", "keep_alive": "1h30m"}, 200),
    ("keep-alive-seconds", "/api/generate", {"model": SMALL, "prompt": "y", "keep_alive": 90}, 200),
    ("keep-alive-negative", "/api/generate", {"model": SMALL, "prompt": "z", "keep_alive": "-1s"}, 200),
    ("generate-no-model", "/api/generate", {"prompt": "x"}, 404),
    ("generate-prompt-number", "/api/generate", {"model": SMALL, "prompt": 5}, 400),
    ("generate-stream-string", "/api/generate", {"model": SMALL, "prompt": "x", "stream": "yes"}, 400),
    ("generate-options-list", "/api/generate", {"model": SMALL, "prompt": "x", "options": []}, 400),
    ("generate-unknown-model", "/api/generate", {"model": "nope", "prompt": "x"}, 404),
    ("chat-no-model", "/api/chat", {"messages": [{"role": "user", "content": "x"}]}, 400),
    ("chat-message-without-role", "/api/chat", {"model": SMALL, "messages": [{"content": "hi"}], "stream": False}, 200),
    ("chat-role-number", "/api/chat", {"model": SMALL, "messages": [{"role": 1, "content": "hi"}]}, 400),
    ("chat-messages-string", "/api/chat", {"model": SMALL, "messages": "hi"}, 400),
    ("embeddings-no-model", "/api/embeddings", {"prompt": "x"}, 400),
    ("embeddings-empty-prompt", "/api/embeddings", {"model": EMBED, "prompt": ""}, 200),
    ("v1-chat-message-without-role", "/v1/chat/completions", {"model": SMALL, "messages": [{"content": "hi"}]}, 200),
    ("v1-chat-no-messages", "/v1/chat/completions", {"model": SMALL, "messages": []}, 400),
    ("v1-chat-no-model", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400),
    (
        "v1-chat-temperature-string",
        "/v1/chat/completions",
        {"model": SMALL, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
        400,
    ),
    (
        "v1-chat-options-ignored",
        "/v1/chat/completions",
        {"model": SMALL, "messages": [{"role": "user", "content": "o"}], "options": [], "keep_alive": "banana"},
        200,
    ),
    ("v1-completions-no-prompt", "/v1/completions", {"model": SMALL}, 200),
    ("v1-completions-prompt-list", "/v1/completions", {"model": SMALL, "prompt": ["a", "b"]}, 400),
    ("v1-completions-no-model", "/v1/completions", {"prompt": "x"}, 404),
    ("v1-embeddings-empty-list", "/v1/embeddings", {"model": EMBED, "input": []}, 400),
    ("v1-embeddings-no-input", "/v1/embeddings", {"model": EMBED}, 400),
    ("v1-embeddings-empty-string", "/v1/embeddings", {"model": EMBED, "input": ""}, 200),
    ("v1-embeddings-bad-format", "/v1/embeddings", {"model": EMBED, "input": "x", "encoding_format": "int8"}, 400),
    (
        "v1-embeddings-format-any-case",
        "/v1/embeddings",
        {"model": EMBED, "input": "x", "encoding_format": "BASE64"},
        200,
    ),
    ("v1-embeddings-unknown-model", "/v1/embeddings", {"model": "nope", "input": "x"}, 404),
]


def _post(base: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(base + path, content=json.dumps(body), timeout=30, trust_env=False)


@pytest.fixture(scope="module")
def both() -> Any:
    """One simulated Ollama and one gateway in front of it for the whole table."""
    with balanced_gateway_over_sim() as (sim, url, _):
        yield sim, url


@pytest.mark.parametrize(("path", "body", "ollama"), [r[1:] for r in PARITY], ids=[r[0] for r in PARITY])
def test_same_status_as_ollama(both: Any, path: str, body: Any, ollama: int) -> None:
    sim, gateway = both
    direct = _post(sim.url, path, body)
    through = _post(gateway, path, body)
    assert direct.status_code == ollama, direct.text  # the simulation follows Ollama's source
    assert through.status_code == direct.status_code, through.text
    # errors in the API's own shape
    if ollama != 200:
        err = through.json()["error"]
        if path.startswith("/v1/"):
            assert set(err) >= {"message", "type", "param", "code"}
        else:
            assert isinstance(err, str) and err
        assert through.headers["x-powergate-model"] == "none"


def test_empty_embed_input_answers_an_empty_list(both: Any) -> None:
    sim, gateway = both
    for base in (sim.url, gateway):
        doc = _post(base, "/api/embed", {"model": EMBED, "input": ""}).json()
        assert doc["embeddings"] == [] and doc["model"] == EMBED
    # /v1/embeddings turns "" into [""]: one vector
    assert len(_post(gateway, "/v1/embeddings", {"model": EMBED, "input": ""}).json()["data"]) == 1


def test_root_is_byte_for_byte_ollamas(both: Any) -> None:
    sim, gateway = both
    direct = httpx.get(sim.url + "/", trust_env=False)
    through = httpx.get(gateway + "/", trust_env=False)
    assert through.content == direct.content == b"Ollama is running"
    assert through.headers["content-type"] == direct.headers["content-type"] == "text/plain; charset=utf-8"
    assert through.headers["x-powergate"].startswith("powergate/")
    head = httpx.head(gateway + "/", trust_env=False)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(b"Ollama is running"))


@pytest.mark.parametrize("path", ["/api/tags", "/api/version", "/api/ps"])
def test_head_gives_the_length_of_the_get(both: Any, path: str) -> None:
    _, gateway = both
    got = httpx.get(gateway + path, trust_env=False)
    head = httpx.head(gateway + path, trust_env=False)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))


def test_pass_through_get_keeps_its_length(both: Any) -> None:
    sim, gateway = both
    direct = httpx.get(sim.url + "/api/ps", trust_env=False)
    through = httpx.get(gateway + "/api/ps", trust_env=False)
    assert "transfer-encoding" not in through.headers  # not re-chunked
    assert through.headers["content-length"] == direct.headers["content-length"]
    assert through.headers["content-type"] == direct.headers["content-type"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": SMALL, "prompt": "ct", "stream": False, "options": {"temperature": 0}}),
        ("/api/chat", {"model": SMALL, "messages": [{"role": "user", "content": "ct"}], "stream": False}),
        ("/api/embed", {"model": EMBED, "input": "ct"}),
        ("/v1/chat/completions", {"model": SMALL, "messages": [{"role": "user", "content": "ct"}], "temperature": 0}),
        ("/v1/completions", {"model": SMALL, "prompt": "ct", "temperature": 0}),
        ("/v1/embeddings", {"model": EMBED, "input": "ct"}),
        ("/api/generate", {"model": "nope", "prompt": "x"}),
        ("/v1/completions", {"model": "nope", "prompt": "x"}),
    ],
)
def test_content_type_as_ollama_sends_it(both: Any, path: str, body: Any) -> None:
    sim, gateway = both
    direct = _post(sim.url, path, body)
    first = _post(gateway, path, body)
    again = _post(gateway, path, body)  # a cache hit where the answer is cacheable
    assert first.headers["content-type"] == direct.headers["content-type"]
    assert again.headers["content-type"] == direct.headers["content-type"]
    expected = "application/json" if path.startswith("/v1/") else "application/json; charset=utf-8"
    assert direct.headers["content-type"] == expected


def test_cors_preflight_allows_what_ollama_allows(both: Any) -> None:
    _, gateway = both
    r = httpx.options(
        gateway + "/api/chat",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "x-stainless-os, openai-beta",
        },
        trust_env=False,
    )
    assert r.status_code == 204
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    # gin-contrib/cors DefaultConfig, which Ollama uses
    assert methods >= {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"x-stainless-os", "openai-beta", "authorization", "content-type"} <= allowed


def test_model_header_is_none_when_no_model_answered(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw: Gateway = make_gateway(sim.url)
    missing = _post(gw.url, "/api/generate", {"model": "nope", "prompt": "x", "stream": False})
    assert missing.status_code == 404 and missing.headers["x-powergate-model"] == "none"
    down: Gateway = make_gateway(closed_port_url())
    r = _post(down.url, "/api/chat", {"model": SMALL, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and r.headers["x-powergate-model"] == "none"
    ok = _post(gw.url, "/api/generate", {"model": SMALL, "prompt": "x", "stream": False})
    assert ok.status_code == 200 and ok.headers["x-powergate-model"] == SMALL
