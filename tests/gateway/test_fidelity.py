"""What a real Ollama client notices through powergate: context sizes, queue depth, aliases,
usage figures, timestamps and stream chunk boundaries. The simulated Ollama records what
arrives, so a claim about what powergate sends is checked where it lands."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from agent.cache.answers import assemble, whole_to_chunks
from agent.cache.base import Entry
from agent.journey.answer import replay
from tests.conftest import Gateway, GatewayFactory
from tests.simollama import SimOllama, SimServer

SMALL, MEDIUM = "qwen2.5-coder:1.5b", "qwen2.5-coder:7b"
EMBED = "nomic-embed-text"


def post(base: str, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=30, trust_env=False, **kw)


def sent_ctx(sim: SimServer) -> list[int]:
    return [e.body["options"]["num_ctx"] for e in sim.sim.inference_log() if e.path in ("/api/generate", "/api/chat")]


# ------------------------------------------------------------ num_ctx (item 2)
def test_a_client_context_is_never_shrunk(sim: SimServer, gateway: Gateway) -> None:
    rag = {"model": SMALL, "prompt": "long rag prompt", "stream": False, "options": {"num_ctx": 32768}}
    r = post(gateway.url, "/api/generate", rag)
    assert r.status_code == 200 and "x-powergate-num-ctx-capped" not in r.headers
    # a client without num_ctx gets the loaded runner's 32768, not the profile's 4096: no reload
    post(gateway.url, "/api/generate", {"model": SMALL, "prompt": "no ctx", "stream": False})
    assert sent_ctx(sim) == [32768, 32768]
    assert sim.sim.loads == 1
    # a model nobody loaded: the profile's value (balanced: 4096)
    post(gateway.url, "/api/chat", {"model": MEDIUM, "messages": [{"role": "user", "content": "x"}], "stream": False})
    assert sent_ctx(sim)[-1] == 4096


def test_the_loaded_runner_context_comes_from_api_ps(sim: SimServer, gateway: Gateway) -> None:
    # another tool loaded the model with a big context directly at Ollama
    post(sim.url, "/api/generate", {"model": SMALL, "prompt": "", "options": {"num_ctx": 16384}})
    assert httpx.get(sim.url + "/api/ps").json()["models"][0]["context_length"] == 16384
    post(gateway.url, "/api/generate", {"model": SMALL, "prompt": "mine", "stream": False})
    assert sent_ctx(sim)[-1] == 16384 and sim.sim.loads == 1


def test_a_profile_cap_is_explicit_and_said_in_a_header(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, config="[profiles.balanced]\nnum_ctx_max = 8192\n", profile="balanced")
    r = post(gw.url, "/api/generate", {"model": SMALL, "prompt": "x", "stream": False, "options": {"num_ctx": 32768}})
    assert r.status_code == 200
    assert r.headers["x-powergate-num-ctx-capped"] == "asked=32768; sent=8192"
    assert sent_ctx(sim) == [8192]


# ------------------------------------------------------------ queue depth (item 3)
def test_as_many_concurrent_chats_as_ollama_queues_are_answered(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(one_slot=True, default_tokens=3)) as sim:
        gw = make_gateway(sim.url, profile="battery-saver")

        async def run() -> list[int]:
            async with httpx.AsyncClient(base_url=gw.url, timeout=120, trust_env=False) as c:

                async def one(i: int) -> int:
                    body = {"model": SMALL, "messages": [{"role": "user", "content": f"c{i}"}], "stream": False}
                    return (await c.post("/api/chat", json=body)).status_code

                return await asyncio.gather(*(one(i) for i in range(150)))

        statuses = asyncio.run(run())
        assert statuses.count(200) == 150  # directly Ollama answers all 150 (it queues 512)


# ------------------------------------------------------------ aliases (item 4)
def test_aliases_are_listed_shown_and_retrievable(gateway: Gateway) -> None:
    tags = httpx.get(gateway.url + "/api/tags").json()["models"]
    by_name = {m["name"]: m for m in tags}
    assert {"autocomplete", "chat", "embed", "auto"} <= set(by_name)
    real = by_name[MEDIUM]  # balanced: chat -> medium
    assert by_name["chat"]["details"] == real["details"] and by_name["chat"]["size"] == real["size"]
    assert MEDIUM in by_name["chat"]["description"]
    assert by_name["embed"]["details"]["family"] == "nomic-bert"
    show = post(gateway.url, "/api/show", {"model": "chat"})
    assert show.status_code == 200 and show.json()["details"] == real["details"]
    assert show.headers["x-powergate-model"] == MEDIUM and MEDIUM in show.json()["description"]
    assert post(gateway.url, "/api/show", {"model": "nope"}).status_code == 404
    ids = {m["id"]: m for m in httpx.get(gateway.url + "/v1/models").json()["data"]}
    assert {"autocomplete", "chat", "embed", "auto", SMALL} <= set(ids)
    assert MEDIUM in ids["chat"]["description"]
    one = httpx.get(gateway.url + "/v1/models/chat")
    assert one.status_code == 200 and one.json()["id"] == "chat" and one.json()["object"] == "model"
    assert httpx.get(gateway.url + f"/v1/models/{SMALL}").json()["id"] == SMALL
    assert httpx.get(gateway.url + "/v1/models/nope").status_code == 404
    # what the alias resolves to follows the profile
    httpx.put(gateway.url + "/agent/profile", json={"profile": "battery-saver"})
    assert MEDIUM not in post(gateway.url, "/api/show", {"model": "chat"}).headers["x-powergate-model"]


# ------------------------------------------------------------ usage (item 6)
def test_cached_embeddings_report_the_tokens_they_cost(sim: SimServer, gateway: Gateway) -> None:
    batch = {"model": EMBED, "input": ["alpha beta", "gamma delta epsilon"]}
    direct = post(sim.url, "/api/embed", batch).json()["prompt_eval_count"]
    first = post(gateway.url, "/api/embed", batch)
    again = post(gateway.url, "/api/embed", batch)
    assert again.headers["x-powergate-cache"] == "hit-memory"
    assert first.json()["prompt_eval_count"] == again.json()["prompt_eval_count"] == direct > 0
    v1 = post(gateway.url, "/v1/embeddings", {"model": EMBED, "input": batch["input"]})
    assert v1.headers["x-powergate-cache"] == "hit-memory"
    assert v1.json()["usage"]["prompt_tokens"] == direct
    # one input alone keeps its share, and a mixed batch adds the shares up
    mixed = post(gateway.url, "/api/embed", {"model": EMBED, "input": ["alpha beta", "new one"]})
    assert mixed.headers["x-powergate-cache-inputs"] == "1/2" and mixed.json()["prompt_eval_count"] > 0


def _sse(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_openai_streams_carry_usage_only_when_asked(sim: SimServer, gateway: Gateway, path: str) -> None:
    base: dict[str, Any] = {"model": SMALL, "stream": True, "temperature": 0}
    if path == "/v1/completions":
        base["prompt"] = "usage please"
    else:
        base["messages"] = [{"role": "user", "content": "usage please"}]
    for _ in range(2):  # a miss, then a hit
        plain = _sse(post(gateway.url, path, base).text)
        assert plain and all("usage" not in c for c in plain)
    asked = dict(base, stream_options={"include_usage": True})
    direct = _sse(post(sim.url, path, asked).text)
    through = _sse(post(gateway.url, path, asked).text)
    assert through[-1]["choices"] == [] and through[-1]["usage"] == direct[-1]["usage"]
    assert sum(1 for c in through if "usage" in c) == sum(1 for c in direct if "usage" in c)


def test_a_replay_is_stamped_when_served(gateway: Gateway) -> None:
    body = {"model": SMALL, "prompt": "stamp", "temperature": 0}
    first = post(gateway.url, "/v1/completions", body).json()
    time.sleep(1.1)  # "created" counts whole seconds
    again = httpx.post(gateway.url + "/v1/completions", json=body, timeout=30)
    assert again.headers["x-powergate-cache"] == "hit-memory"
    assert again.json()["created"] > first["created"]
    assert again.json()["choices"] == first["choices"]


def test_typeahead_reports_the_tokens_it_served(gateway: Gateway) -> None:
    body = {"model": SMALL, "prompt": "def f(", "suffix": "\n", "stream": False, "options": {"num_predict": 20}}
    first = post(gateway.url, "/api/generate", body).json()
    typed = first["response"][:6]
    rest = post(gateway.url, "/api/generate", dict(body, prompt="def f(" + typed))
    assert rest.headers["x-powergate-cache"] == "typeahead"
    doc = rest.json()
    assert doc["response"] == first["response"][6:]
    assert 0 < doc["eval_count"] < first["eval_count"]


def test_assembled_answers_keep_logprobs_and_tool_call_indexes() -> None:
    lp = {"content": [{"token": "a", "logprob": -0.1}]}
    lp2 = {"content": [{"token": "b", "logprob": -0.2}]}
    chunks = [
        {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": lp}]},
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"id": "t0", "index": 0, "type": "function", "function": {"name": "f", "arguments": "{}"}},
                            {"id": "t1", "index": 1, "type": "function", "function": {"name": "g", "arguments": "{}"}},
                        ]
                    },
                    "logprobs": lp2,
                }
            ],
        },
        {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    raw = [json.dumps(c).encode() for c in chunks]
    whole = json.loads(assemble("v1chat", raw))
    choice = whole["choices"][0]
    assert [t["index"] for t in choice["message"]["tool_calls"]] == [0, 1]
    assert choice["logprobs"]["content"] == lp["content"] + lp2["content"]
    # and back to a stream: the logprobs and indexes survive
    again = [json.loads(c) for c in whole_to_chunks("v1chat", json.dumps(whole).encode())]
    assert again[0]["choices"][0]["logprobs"] == choice["logprobs"]
    assert [t["index"] for t in again[0]["choices"][0]["delta"]["tool_calls"]] == [0, 1]
    native = [
        json.dumps({"model": "m", "response": "a", "done": False, "logprobs": [{"token": "a"}]}).encode(),
        json.dumps({"model": "m", "response": "b", "done": True, "logprobs": [{"token": "b"}]}).encode(),
    ]
    assert json.loads(assemble("generate", native))["logprobs"] == [{"token": "a"}, {"token": "b"}]


# ------------------------------------------------------------ chunk boundaries (item 7)
async def _writes(resp: Any) -> list[bytes]:
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])

    await resp({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send)
    return sent


@pytest.mark.parametrize("api", ["generate", "chat", "v1completion"])
def test_a_cached_stream_is_replayed_one_document_per_write(api: str) -> None:
    if api == "v1completion":
        docs = [{"id": "x", "created": 1, "choices": [{"text": t, "index": 0, "finish_reason": None}]} for t in "abc"]
        docs.append({"id": "x", "created": 1, "choices": [{"text": "", "index": 0, "finish_reason": "stop"}]})
    else:
        key = "response" if api == "generate" else "message"
        docs = [{"model": "m", "created_at": "2020-01-01T00:00:00Z", key: "t", "done": False} for _ in range(3)]
        docs.append({"model": "m", "created_at": "2020-01-01T00:00:00Z", key: "", "done": True})
    entry = Entry(api, "m", [json.dumps(d).encode() for d in docs])
    writes = asyncio.run(_writes(replay(entry, api, True, False, {})))
    if api == "v1completion":
        assert len(writes) == len(docs) + 1 and writes[-1] == b"data: [DONE]\n\n"
        assert all(w.startswith(b"data: ") and w.endswith(b"\n\n") and w.count(b"data: ") == 1 for w in writes)
    else:
        assert len(writes) == len(docs)
        for w in writes:  # each write parses on its own, as naive clients do
            assert w.endswith(b"\n") and w.count(b"\n") == 1
            assert json.loads(w)["created_at"] != "2020-01-01T00:00:00Z"
