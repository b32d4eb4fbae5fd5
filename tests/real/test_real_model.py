"""powergate in front of a REAL model server (llama-cpp-python + Gemma 3 270M), driven by the
official `ollama` and `openai` clients. Answers are short (a few tokens) to keep CI lean."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from agent.gateway.aliases import ALIASES
from tests.conftest import Gateway
from tests.real.server import MODEL_ALIAS, RealLlamaServer

pytestmark = [pytest.mark.slow, pytest.mark.real]

CLIENT_TIMEOUT = 300.0  # seconds: a shared 2-core CI machine can be very slow
FEW = 8  # tokens per answer
CODE = "import os\n\n\ndef list_python_files(root):\n    "
IDLE_CPU_S = 0.5  # CPU-seconds a server may use in the measuring window once it stopped generating


@pytest.fixture
def oc(real_gateway: Gateway) -> Iterator[ollama.Client]:
    c = ollama.Client(host=real_gateway.url, timeout=CLIENT_TIMEOUT)
    yield c
    c.close()


@pytest.fixture
def http(real_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_gateway.url, timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        yield c


def test_kind_probed_as_openai_compatible(http: httpx.Client) -> None:
    up = http.get("/agent/status").json()["upstreams"][0]
    assert up["kind"] == "openai" and up["reachable"] is True


def test_generate_then_cache_hit(http: httpx.Client, real_server: RealLlamaServer) -> None:
    body = {
        "model": MODEL_ALIAS,
        "prompt": CODE,
        "raw": True,
        "stream": False,
        "options": {"num_predict": FEW, "temperature": 0},
    }
    first = http.post("/api/generate", json=body)
    assert first.status_code == 200, first.text
    doc = first.json()
    # powergate asks this server to stream (so that aborts stop it); it sends no usage in streams,
    # so the prompt's token count is unknown (0) while eval_count counts the streamed tokens
    assert doc["done"] and doc["response"] and doc["eval_count"] > 0 and doc["prompt_eval_count"] >= 0
    assert doc["done_reason"] in ("stop", "length") and doc["total_duration"] > 0
    cpu = real_server.cpu_seconds()
    second = http.post("/api/generate", json=body)
    assert second.headers["x-powergate-cache"] == "hit-memory" and second.json()["response"] == doc["response"]
    assert real_server.cpu_seconds() - cpu < IDLE_CPU_S  # the model did not run for the hit


def test_stream_with_the_ollama_client(oc: ollama.Client) -> None:
    parts = list(
        oc.generate(model=MODEL_ALIAS, prompt="def main():\n", raw=True, stream=True, options={"num_predict": FEW})
    )
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) and parts[-1].eval_count


def test_chat_with_both_clients(oc: ollama.Client, real_gateway: Gateway) -> None:
    r = oc.chat(
        model=MODEL_ALIAS,
        messages=[{"role": "user", "content": "Name a Python keyword."}],
        options={"num_predict": FEW},
    )
    assert r.message.role == "assistant" and r.message.content and r.done
    client = openai.OpenAI(base_url=real_gateway.url + "/v1", api_key="unused", timeout=CLIENT_TIMEOUT, max_retries=0)
    try:
        chunks = list(
            client.chat.completions.create(
                model=MODEL_ALIAS, messages=[{"role": "user", "content": "Say hello."}], max_tokens=FEW, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        whole = client.completions.create(model=MODEL_ALIAS, prompt=CODE, max_tokens=FEW, temperature=0)
    finally:
        client.close()
    assert text and whole.choices[0].text and whole.usage and whole.usage.completion_tokens > 0


def test_fim_suffix_on_a_model_without_fim_is_ollamas_400(http: httpx.Client) -> None:
    # Gemma 3 270M has no FIM tokens and is of no code family: Ollama would refuse the same way.
    r = http.post("/api/generate", json={"model": MODEL_ALIAS, "prompt": "a = ", "suffix": "\n", "stream": False})
    assert r.status_code == 400 and r.json() == {"error": f'"{MODEL_ALIAS}" does not support insert'}


def test_raw_fim_prompt_and_typeahead(http: httpx.Client, real_server: RealLlamaServer) -> None:
    # How Continue and Twinny ask: a raw prompt in a FIM template; typeahead splits it at the markers.
    def fim(prefix: str) -> dict[str, object]:
        prompt = f"<|fim_prefix|>{prefix}<|fim_suffix|>\n    return total\n<|fim_middle|>"
        return {
            "model": MODEL_ALIAS,
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": {"num_predict": FEW, "temperature": 0},
        }

    prefix = "def total_size(paths):\n    total = 0\n    "
    first = http.post("/api/generate", json=fim(prefix))
    assert first.status_code == 200, first.text
    completion = first.json()["response"]
    assert len(completion) >= 2
    typed = completion[:1]
    cpu = real_server.cpu_seconds()
    again = http.post("/api/generate", json=fim(prefix + typed))
    assert again.headers["x-powergate-cache"] == "typeahead"
    assert again.json()["response"] == completion[1:]
    assert real_server.cpu_seconds() - cpu < IDLE_CPU_S


def test_abort_stops_generation_on_the_server(real_gateway: Gateway, real_server: RealLlamaServer) -> None:
    body = {
        "model": MODEL_ALIAS,
        "prompt": "Write a long story about a lighthouse.",
        "stream": True,
        "options": {"num_predict": 400},
    }
    cpu_start = real_server.cpu_seconds()
    with httpx.Client(base_url=real_gateway.url, timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        with c.stream("POST", "/api/generate", json=body, headers={"cache-control": "no-store"}) as r:
            lines = r.iter_lines()
            for _ in range(3):
                next(lines)
    generating = real_server.cpu_seconds() - cpu_start
    assert generating > 0  # the server was working while we read
    time.sleep(2.0)  # the server notices the closed connection at its next token
    before = real_server.cpu_seconds()
    time.sleep(3.0)
    after = real_server.cpu_seconds()
    # 400 tokens take this server tens of seconds: had it kept generating, it would have used
    # about a CPU-second per second of the window
    assert after - before < IDLE_CPU_S, f"the server kept generating: {after - before:.2f} CPU-s in 3 s"
    assert "disconnected" in real_server.log().lower()


def test_a_server_busy_with_another_client_is_not_reported_down(
    real_gateway: Gateway, real_server: RealLlamaServer
) -> None:
    """llama-cpp-python serves one request at a time: while another client streams a long
    answer directly from it, powergate's health check waits past its timeout. Busy is not
    down: no "not reachable" flip (which would notify the user and mark the host down)."""
    import asyncio

    from agent.upstreams.base import HEALTH_TIMEOUT

    up = real_gateway.runtime.upstreams.upstreams[0]
    assert up.health.reachable is True
    body = {"model": MODEL_ALIAS, "prompt": "Write a long story about a lighthouse.", "max_tokens": 400, "stream": True}
    with httpx.Client(base_url=real_server.url, timeout=CLIENT_TIMEOUT, trust_env=False) as c:
        with c.stream("POST", "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            next(lines)  # generating now, for someone else
            loop = real_gateway.server.loop
            t0 = time.monotonic()
            health = asyncio.run_coroutine_threadsafe(up.check(), loop).result(timeout=30)
            waited = time.monotonic() - t0
    # the check really waited behind the generation (else this test proves nothing)
    assert waited >= HEALTH_TIMEOUT * 0.9, waited
    assert health.reachable is True, health.error
    status = httpx.get(real_gateway.url + "/agent/status", timeout=30).json()
    assert [u["reachable"] for u in status["upstreams"]] == [True]


def test_unknown_model_and_missing_embeddings_answer_in_ollamas_format(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": "llama3:70b", "prompt": "x", "stream": False})
    assert r.status_code == 404 and r.json() == {"error": 'model "llama3:70b" not found, try pulling it first'}
    # this server was started without --embedding: its refusal comes back with its status, in Ollama's shape
    e = http.post("/api/embed", json={"model": MODEL_ALIAS, "input": ["x"]})
    assert e.status_code >= 400 and isinstance(e.json()["error"], str) and e.json()["error"]


def test_tags_show_ps_from_the_real_server(oc: ollama.Client) -> None:
    # powergate lists its aliases (autocomplete, chat, embed, auto) beside the server's models
    assert [m.model for m in oc.list().models if m.model not in ALIASES] == [MODEL_ALIAS]
    assert "completion" in (oc.show(MODEL_ALIAS).capabilities or [])
    assert [m.model for m in oc.ps().models] == [MODEL_ALIAS]
