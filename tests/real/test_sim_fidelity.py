"""The simulated OpenAI-compatible server (tests/simopenai) checked against the real one:
every field the real llama-cpp-python server sends, the simulation sends too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.real.server import MODEL_ALIAS, RealLlamaServer
from tests.simopenai import SimModel, SimOpenAI, SimOpenAIServer

pytestmark = [pytest.mark.slow, pytest.mark.real]

VENDOR_ONLY = {"permissions"}  # llama-cpp-python's own model field; nobody reads it
TIMEOUT = 300.0  # seconds


@pytest.fixture
def sim() -> Iterator[SimOpenAIServer]:
    with SimOpenAIServer(SimOpenAI("openai", (SimModel(MODEL_ALIAS),))) as srv:
        yield srv


def events(body: bytes) -> list[dict[str, Any]]:
    out = []
    for line in body.splitlines():
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            out.append(json.loads(line[5:]))
    return out


def shape(doc: Any) -> set[str]:
    """Dotted key paths of a JSON document (lists: their first element)."""
    keys: set[str] = set()

    def walk(v: Any, prefix: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                keys.add(prefix + k)
                walk(x, prefix + k + ".")
        elif isinstance(v, list) and v:
            walk(v[0], prefix)

    walk(doc, "")
    return keys


def both(real: RealLlamaServer, sim: SimOpenAIServer, path: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        a = c.post(real.url + path, json=body)
        b = c.post(sim.url + path, json=body)
    assert a.status_code == b.status_code == 200
    assert a.headers["content-type"].split(";")[0] == b.headers["content-type"].split(";")[0]
    return a.content, b.content


def test_completion_whole_and_streamed_have_the_real_fields(real_server: RealLlamaServer, sim: SimOpenAIServer) -> None:
    body = {"model": MODEL_ALIAS, "prompt": "x = ", "max_tokens": 3}
    real, simulated = both(real_server, sim, "/v1/completions", body)
    assert shape(json.loads(real)) <= shape(json.loads(simulated))
    real, simulated = both(real_server, sim, "/v1/completions", dict(body, stream=True))
    assert real.rstrip().endswith(b"data: [DONE]") and simulated.rstrip().endswith(b"data: [DONE]")
    assert shape(events(real)[0]) <= shape(events(simulated)[0])


def test_chat_whole_and_streamed_have_the_real_fields(real_server: RealLlamaServer, sim: SimOpenAIServer) -> None:
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    real, simulated = both(real_server, sim, "/v1/chat/completions", body)
    assert shape(json.loads(real)) <= shape(json.loads(simulated))
    real, simulated = both(real_server, sim, "/v1/chat/completions", dict(body, stream=True))
    r, s = events(real), events(simulated)
    assert shape(r[0]) <= shape(s[0]) and shape(r[1]) <= shape(s[1])  # the role chunk, then content


def test_models_list_has_the_real_fields(real_server: RealLlamaServer, sim: SimOpenAIServer) -> None:
    real = httpx.get(real_server.url + "/v1/models", trust_env=False).json()
    simulated = httpx.get(sim.url + "/v1/models", trust_env=False).json()
    assert shape(real) - {f"data.{k}" for k in VENDOR_ONLY} <= shape(simulated)
    assert [m["id"] for m in real["data"]] == [m["id"] for m in simulated["data"]]
