"""The official `openai` client against powergate's OpenAI-compatible paths."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Gateway

SMALL = "qwen2.5-coder:1.5b"


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused")
    yield c
    c.close()


def test_chat_whole_and_streamed(client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "hello"}]
    whole = client.chat.completions.create(model=SMALL, messages=msgs, temperature=0)  # type: ignore[arg-type]
    assert whole.choices[0].message.content
    chunks = list(client.chat.completions.create(model=SMALL, messages=msgs, temperature=0, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_embeddings_models(client: openai.OpenAI) -> None:
    c = client.completions.create(model=SMALL, prompt="def f(", max_tokens=5)
    assert c.choices[0].text
    e = client.embeddings.create(model="nomic-embed-text", input=["a", "b"])
    assert [d.index for d in e.data] == [0, 1]
    assert SMALL in [m.id for m in client.models.list()]


def test_errors_in_openai_format(client: openai.OpenAI, gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "not found" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e2:
        client.chat.completions.create(model=SMALL, messages="not a list")  # type: ignore[arg-type]
    assert e2.value.body is not None
    r = httpx.post(gateway.url + "/v1/chat/completions", content=b"{", timeout=10)
    err = r.json()["error"]
    assert r.status_code == 400 and set(err) == {"message", "type", "param", "code"}


def test_sse_ends_with_done(gateway: Gateway) -> None:
    with (
        gateway.client() as c,
        c.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": SMALL, "messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]" and all(ln.startswith("data: ") for ln in lines)
