"""The contract every upstream kind passes: the same client calls, the same Ollama/OpenAI answers.

One parametrized fixture puts powergate (kind "auto": it has to recognise each server)
in front of a simulated Ollama, llama.cpp server, vLLM-like OpenAI server and LM Studio,
and the official `ollama` and `openai` clients talk to powergate as they would to Ollama.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import ollama
import openai
import pytest

from tests.conftest import Gateway, GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer
from tests.simopenai import SimModel, SimOpenAI, SimOpenAIServer

SLOW_TOKEN_S = 0.02  # seconds per token while a test aborts a long answer
LONG_ANSWER = 400  # tokens: far more than the test lets through before aborting


@dataclass
class Backend:
    kind: str  # what powergate must recognise
    gateway: Gateway
    model: str  # a code model's name as a client sends it
    embed: str
    generated: Callable[[], int]  # tokens the server generated so far
    slow_down: Callable[[], None]  # make answers long and slow (for abort tests)


def _config(url: str, model: str, embed: str) -> str:
    return (
        f'[[upstream]]\nurl = "{url}"\nkind = "auto"\n'
        f'[models]\nsmall = "{model}"\nmedium = "{model}"\nlarge = "{model}"\nembed = "{embed}"\n'
    )


SIMS = {
    "ollama": None,
    "llamacpp": SimOpenAI("llamacpp", (SimModel("/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),), slots=2),
    "openai": SimOpenAI(
        "openai",
        (SimModel("Qwen/Qwen2.5-Coder-1.5B-Instruct"), SimModel("nomic-ai/nomic-embed-text-v1.5", embedding=True)),
    ),
    "lmstudio": SimOpenAI(
        "lmstudio",
        (SimModel("qwen2.5-coder-1.5b-instruct"), SimModel("text-embedding-nomic-embed-text-v1.5", embedding=True)),
    ),
}
NAMES = {
    "ollama": ("qwen2.5-coder:1.5b", "nomic-embed-text"),
    "llamacpp": ("qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m"),
    "openai": ("Qwen/Qwen2.5-Coder-1.5B-Instruct", "nomic-ai/nomic-embed-text-v1.5"),
    "lmstudio": ("qwen2.5-coder-1.5b-instruct", "text-embedding-nomic-embed-text-v1.5"),
}


@pytest.fixture(params=list(SIMS))
def backend(request: pytest.FixtureRequest, make_gateway: GatewayFactory) -> Iterator[Backend]:
    name = request.param
    model, embed = NAMES[name]
    if name == "ollama":
        so = SimOllama()
        with SimServer(so) as srv:

            def slow_ollama() -> None:
                so.token_delay_s, so.default_tokens = SLOW_TOKEN_S, LONG_ANSWER

            gw = make_gateway(config=_config(srv.url, model, embed))
            yield Backend("ollama", gw, model, embed, lambda: sum(e.tokens for e in so.log), slow_ollama)
        return
    template = SIMS[name]
    assert template is not None
    api = SimOpenAI(template.flavour, template.models, slots=template.slots)
    with SimOpenAIServer(api) as srv:

        def slow() -> None:
            api.token_delay_s, api.default_tokens = SLOW_TOKEN_S, LONG_ANSWER

        gw = make_gateway(config=_config(srv.url, model, embed))
        kind = "openai" if name == "lmstudio" else name
        yield Backend(kind, gw, model, embed, lambda: api.tokens_generated, slow)


@pytest.fixture
def oc(backend: Backend) -> Iterator[ollama.Client]:
    c = ollama.Client(host=backend.gateway.url)
    yield c
    c.close()


def test_kind_is_recognised_and_shown(backend: Backend) -> None:
    with backend.gateway.client() as c:
        ups = c.get("/agent/status").json()["upstreams"]
    assert [u["kind"] for u in ups] == [backend.kind] and ups[0]["reachable"] is True


def test_generate_whole_and_streamed_in_ollamas_shape(backend: Backend, oc: ollama.Client) -> None:
    client = oc
    parts = list(client.generate(model=backend.model, prompt="def add(a, b):", options={"temperature": 0}, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1]) and len(parts) > 2
    final = parts[-1]
    assert final.done_reason in ("stop", "length") and final.eval_count and final.eval_count > 0
    assert final.prompt_eval_count and final.prompt_eval_count > 0
    assert final.total_duration and final.total_duration > 0 and final.eval_duration is not None
    whole = client.generate(model=backend.model, prompt="def add(a, b):", options={"temperature": 0})
    assert whole.done and whole.response == "".join(p.response for p in parts)


def test_second_identical_request_is_a_cache_hit(backend: Backend) -> None:
    body = {"model": backend.model, "prompt": "import os\n", "stream": False, "options": {"temperature": 0}}
    with backend.gateway.client() as c:
        first = c.post("/api/generate", json=body)
        before = backend.generated()
        second = c.post("/api/generate", json=body)
    assert first.status_code == 200 and first.headers["x-powergate-cache"] == "miss"
    assert second.headers["x-powergate-cache"] == "hit-memory" and second.json()["response"] == first.json()["response"]
    assert backend.generated() == before  # the server did nothing for the hit


def test_chat_whole_and_streamed(backend: Backend, oc: ollama.Client) -> None:
    client = oc
    msgs = [{"role": "user", "content": "write a haiku about tabs"}]
    whole = client.chat(model=backend.model, messages=msgs, options={"temperature": 0})
    assert whole.message.role == "assistant" and whole.message.content and whole.done
    parts = list(client.chat(model=backend.model, messages=msgs, options={"temperature": 0.5}, stream=True))
    assert parts[-1].done and "".join(p.message.content or "" for p in parts)


def test_openai_client_chat_completions_and_stream(backend: Backend) -> None:
    client = openai.OpenAI(base_url=backend.gateway.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=backend.model, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    assert r.choices[0].message.content
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model=backend.model, prompt="x = ", max_tokens=6, stream=True)
        if c.choices
    )
    assert text
    client.close()


def test_fim_with_suffix(backend: Backend) -> None:
    body = {"model": backend.model, "prompt": "def f(x):\n    return ", "suffix": "\n\nprint(f(2))", "stream": False}
    with backend.gateway.client() as c:
        r = c.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["done"] and r.json()["response"]


def test_embeddings_all_three_apis(backend: Backend, oc: ollama.Client) -> None:
    client = oc
    emb = client.embed(model=backend.embed, input=["alpha", "beta"])
    assert len(emb.embeddings) == 2 and len(emb.embeddings[0]) > 8
    again = client.embed(model=backend.embed, input=["beta", "gamma"])
    assert again.embeddings[0] == pytest.approx(emb.embeddings[1])
    oa = openai.OpenAI(base_url=backend.gateway.url + "/v1", api_key="unused", max_retries=0)
    v = oa.embeddings.create(model=backend.embed, input="alpha").data[0].embedding
    assert v == pytest.approx(emb.embeddings[0], rel=1e-5)
    oa.close()


def test_unknown_model_is_ollamas_404(backend: Backend) -> None:
    with backend.gateway.client() as c:
        r = c.post("/api/generate", json={"model": "no-such-model:7b", "prompt": "x", "stream": False})
        o = c.post(
            "/v1/chat/completions", json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
        )
    assert r.status_code == 404 and "not found" in r.json()["error"]
    assert o.status_code == 404 and isinstance(o.json()["error"], dict) and o.json()["error"]["message"]


def test_tags_show_ps_list_the_servers_models(backend: Backend, oc: ollama.Client) -> None:
    client = oc
    names = [m.model or "" for m in client.list().models]
    assert any(backend.model.lower() in n.lower() for n in names), names
    show = client.show(backend.model)
    assert "completion" in (show.capabilities or [])
    client.generate(model=backend.model, prompt="warm")
    assert client.ps().models


def test_abort_stops_generation_upstream(backend: Backend) -> None:
    backend.slow_down()
    body = {"model": backend.model, "prompt": "long story", "stream": True, "options": {"num_predict": LONG_ANSWER}}
    with backend.gateway.client() as c, c.stream("POST", "/api/generate", json=body) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    # the client has gone: the upstream request is closed and the server stops generating
    assert wait_for(lambda: _stable(backend.generated), timeout=10)
    assert backend.generated() < LONG_ANSWER


def _stable(count: Callable[[], int]) -> bool:
    a = count()
    time.sleep(SLOW_TOKEN_S * 10)
    return count() == a


def test_upstream_error_in_callers_format(backend: Backend) -> None:
    with backend.gateway.client() as c:
        bad = c.post("/api/generate", json={"model": backend.model, "prompt": 5})
    assert bad.status_code == 400 and isinstance(bad.json()["error"], str)


def test_status_cli_format_names_kind(backend: Backend) -> None:
    from agent.cli import _fmt_status

    with httpx.Client(base_url=backend.gateway.url, trust_env=False) as c:
        s = c.get("/agent/status").json()
    s.setdefault("listen", backend.gateway.url)
    s.setdefault("uptime_s", 0)
    s.setdefault("version", "x")
    assert f"(kind {backend.kind})" in _fmt_status(s)
