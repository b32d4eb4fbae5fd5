"""The official `ollama` client pointed at powergate works as it does against Ollama."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.conftest import Gateway
from tests.simollama import SimServer

SMALL = "qwen2.5-coder:1.5b"


@pytest.fixture
def client(gateway: Gateway) -> Iterator[ollama.Client]:
    c = ollama.Client(host=gateway.url)
    yield c
    c.close()


def test_list_show_ps_version(client: ollama.Client, sim: SimServer) -> None:
    names = [m.model for m in client.list().models]
    assert SMALL in names and "nomic-embed-text:latest" in names
    assert "completion" in (client.show(SMALL).capabilities or [])
    client.generate(model=SMALL, prompt="warm")
    assert [m.model for m in client.ps().models] == [SMALL]


def test_generate_whole_and_streamed(client: ollama.Client, sim: SimServer) -> None:
    whole = client.generate(model=SMALL, prompt="def add(a, b):", options={"temperature": 0})
    assert whole.done and whole.response and whole.eval_count == 12
    parts = list(client.generate(model=SMALL, prompt="def add(a, b):", options={"temperature": 0}, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == whole.response


def test_chat_and_embeddings(client: ollama.Client) -> None:
    msg = client.chat(model=SMALL, messages=[{"role": "user", "content": "hello"}]).message
    assert msg.role == "assistant" and msg.content
    emb = client.embed(model="nomic-embed-text", input=["a", "b", "c"])
    assert len(emb.embeddings) == 3 and len(emb.embeddings[0]) == 768
    legacy = client.embeddings(model="nomic-embed-text", prompt="a")
    assert list(legacy.embedding) == pytest.approx(emb.embeddings[0])


def test_errors_relayed_with_status(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="no-such-model", prompt="x")
    assert e.value.status_code == 404 and "not found" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="nomic-embed-text", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400 and "does not support" in e.value.error


def test_passthrough_pull_copy_delete_streams_progress(client: ollama.Client, sim: SimServer) -> None:
    progress = list(client.pull("llama3", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.completed for p in progress)
    client.copy("llama3", "mine")
    assert "mine" in sim.sim.models
    client.delete("mine")
    assert "mine" not in sim.sim.models
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("mine")
    assert e.value.status_code == 404


def test_aliases_choose_the_profile_model(gateway: Gateway, sim: SimServer) -> None:
    with gateway.client() as c:
        r = c.post("/api/generate", json={"model": "chat", "prompt": "hi", "stream": False})
    assert r.status_code == 200
    # balanced (auto mode's start profile): chat -> medium
    assert r.json()["model"] == "qwen2.5-coder:7b"
    assert r.headers["x-powergate-model"] == "qwen2.5-coder:7b"
    assert sim.sim.inference_log()[-1].model == "qwen2.5-coder:7b"


def test_async_client_streams(gateway: Gateway) -> None:
    import asyncio

    async def go() -> str:
        c = ollama.AsyncClient(host=gateway.url)
        out = ""
        async for part in await c.chat(model=SMALL, messages=[{"role": "user", "content": "x"}], stream=True):
            out += part.message.content or ""
        await c.close()
        return out

    assert asyncio.run(go())
