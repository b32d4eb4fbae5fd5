"""Third-party Python clients (installed from PyPI by the test extra), directly and through powergate.

`ollama`, `openai`, `langchain-ollama`, `llama-index-llms-ollama` and
`llama-index-embeddings-ollama` each run the same calls against the simulated Ollama
and through powergate; the results must be the same, for every case of issue 13.
"""

from __future__ import annotations

import asyncio
import gc
import json
import urllib.request
from typing import Any

import httpx
import ollama
import openai
import pytest
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
from llama_index.embeddings.ollama import OllamaEmbedding
from llama_index.llms.ollama import Ollama as LlamaIndexOllama

from tests.clients.conftest import Pair

# LangChain and llama-index make their own HTTP clients and never close them: their
# sockets are collected after each test (below) instead of warning in another test.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")

SMALL, MEDIUM = "qwen2.5-coder:1.5b", "qwen2.5-coder:7b"
EMBED = "nomic-embed-text"
DET = {"temperature": 0, "seed": 7}  # the simulated model answers deterministically


@pytest.fixture(autouse=True)
def _collect_client_sockets() -> Any:
    yield
    gc.collect()


def oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=30)


# ------------------------------------------------------------ the ollama client
def test_ollama_client_same_answers(pair: Pair) -> None:
    def calls(base: str) -> dict[str, Any]:
        c = ollama.Client(host=base, timeout=30)
        gen = c.generate(model=SMALL, prompt="def add(a, b):", options=DET)
        chat = c.chat(model=SMALL, messages=[{"role": "user", "content": "hello"}], options=DET)
        streamed = "".join(p.response for p in c.generate(model=SMALL, prompt="stream me", options=DET, stream=True))
        emb = c.embed(model=EMBED, input=["one", "two"])
        empty = c.embed(model=EMBED, input="")
        return {
            "gen": gen.response,
            "gen_done": gen.done_reason,
            "chat": chat.message.content,
            "streamed": streamed,
            "emb": emb.embeddings,
            "emb_tokens": emb.prompt_eval_count,
            "empty": empty.embeddings,
        }

    direct, through = pair.both(calls)
    assert through == direct
    assert through["empty"] == []  # input "" -> embeddings [] (issue 13, item 8)
    again = calls(pair.gateway)  # now from powergate's cache
    assert again == direct  # including the embedding usage of cached inputs (item 6)


def test_ollama_client_same_errors(pair: Pair) -> None:
    def status(base: str, **kw: Any) -> int:
        try:
            ollama.Client(host=base, timeout=30).generate(model=kw.pop("model", SMALL), prompt="x", **kw)
        except ollama.ResponseError as exc:
            return exc.status_code
        return 200

    for kw in ({"keep_alive": "banana"}, {"keep_alive": "10"}, {"model": "not-pulled"}, {"keep_alive": "5m"}):
        direct, through = pair.both(lambda base, kw=kw: status(base, **dict(kw)))
        assert through == direct, kw
    assert status(pair.gateway, keep_alive="banana") == 400  # Ollama: time: invalid duration


def test_ollama_client_sees_aliases_as_models(pair: Pair) -> None:
    c = ollama.Client(host=pair.gateway, timeout=30)
    names = {m.model for m in c.list().models}
    assert {"autocomplete", "chat", "embed", "auto", SMALL} <= names
    shown = c.show("chat")
    direct = ollama.Client(host=pair.direct, timeout=30).show(MEDIUM)  # balanced: chat -> the medium model
    assert shown.details == direct.details and shown.modelinfo == direct.modelinfo
    assert c.chat(model="chat", messages=[{"role": "user", "content": "hi"}]).model == MEDIUM


def test_ollama_async_client_queue_as_deep_as_ollama(pair: Pair) -> None:
    """150 concurrent chats: Ollama queues them all (512), so must powergate (item 3)."""

    async def burst(base: str) -> list[str]:
        async with ollama.AsyncClient(host=base, timeout=120) as c:
            msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(150)]
            got = await asyncio.gather(*(c.chat(model=SMALL, messages=m, options=DET) for m in msgs))
        return [g.message.content for g in got]

    direct, through = pair.both(lambda base: asyncio.run(burst(base)))
    assert len(through) == 150 and through == direct


def test_ollama_async_client_batch_of_extending_prompts(pair: Pair) -> None:
    """Completions whose prompts extend one another, sent at once: all answered (item 5)."""
    prompts = ["import o", "import os", "import os\n", "import os\nimport s"]

    async def batch(base: str) -> list[bool]:
        async with ollama.AsyncClient(host=base, timeout=60) as c:
            got = await asyncio.gather(
                *(c.generate(model=SMALL, prompt=p, suffix="\n", options={"num_predict": 8}) for p in prompts)
            )
        return [g.done for g in got]

    direct, through = pair.both(lambda base: asyncio.run(batch(base)))
    assert direct == through == [True] * 4


# ------------------------------------------------------------ the openai client
def test_openai_client_same_answers(pair: Pair) -> None:
    def calls(base: str) -> dict[str, Any]:
        c = oai(base)
        chat = c.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "hi"}], temperature=0)
        comp = c.completions.create(model=SMALL, prompt="def f(", temperature=0)
        emb = c.embeddings.create(model=EMBED, input=["alpha", "beta gamma"])  # base64 by default
        emb_float = c.embeddings.create(model=EMBED, input="alpha", encoding_format="float")
        plain = list(c.completions.create(model=SMALL, prompt="stream", temperature=0, stream=True))
        usage = list(
            c.completions.create(
                model=SMALL, prompt="stream", temperature=0, stream=True, stream_options={"include_usage": True}
            )
        )
        return {
            "chat": chat.choices[0].message.content,
            "chat_usage": chat.usage.model_dump() if chat.usage else None,
            "comp": comp.choices[0].text,
            "emb": [d.embedding for d in emb.data],
            "emb_usage": emb.usage.prompt_tokens,
            "emb_float": emb_float.data[0].embedding,
            "plain_text": "".join(ch.choices[0].text for ch in plain if ch.choices),
            "plain_usage": [ch.usage for ch in plain],
            "usage_text": "".join(ch.choices[0].text for ch in usage if ch.choices),
            "usage_last": usage[-1].usage.model_dump() if usage[-1].usage else None,
        }

    direct, through = pair.both(calls)
    assert through == direct
    assert all(u is None for u in through["plain_usage"])  # no usage unless asked (item 6)
    assert through["usage_last"]["completion_tokens"] > 0
    assert calls(pair.gateway) == direct  # replayed from the cache


def test_openai_client_same_errors_and_models(pair: Pair) -> None:
    def status(base: str, call: str) -> int:
        c = oai(base)
        try:
            if call == "bad-format":
                c.embeddings.create(model=EMBED, input="x", encoding_format="int8")  # type: ignore[arg-type]
            elif call == "empty-input":
                c.embeddings.create(model=EMBED, input=[])
            elif call == "no-messages":
                c.chat.completions.create(model=SMALL, messages=[])
            elif call == "unknown-model":
                c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
            elif call == "roleless":
                c.chat.completions.create(model=SMALL, messages=[{"content": "x"}])  # type: ignore[list-item, misc]
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    for call in ("bad-format", "empty-input", "no-messages", "unknown-model", "roleless"):
        direct, through = pair.both(lambda base, call=call: status(base, call))
        assert through == direct, call
    c = oai(pair.gateway)
    ids = {m.id for m in c.models.list()}
    assert {"autocomplete", "chat", "embed", "auto", SMALL} <= ids
    assert c.models.retrieve("chat").id == "chat"
    assert oai(pair.direct).models.retrieve(SMALL).id == c.models.retrieve(SMALL).id


# ------------------------------------------------------------ LangChain
def test_langchain_ollama_validates_aliases_and_keeps_num_ctx(pair: Pair) -> None:
    # validate_model_on_init looks the model up in /api/tags (item 4)
    chat = ChatOllama(model="chat", base_url=pair.gateway, validate_model_on_init=True, temperature=0)
    assert chat.invoke("hello").content
    with pytest.raises(ValueError):
        ChatOllama(model="chat", base_url=pair.direct, validate_model_on_init=True)  # Ollama has no "chat"

    def rag(base: str) -> str:
        llm = ChatOllama(model=SMALL, base_url=base, num_ctx=32768, temperature=0, seed=3)
        return str(llm.invoke("answer from these retrieved documents").content)

    direct, through = pair.both(rag)
    assert through == direct
    assert pair.sent("/api/chat")[-1]["options"]["num_ctx"] == 32768  # never shrunk (item 2)

    def complete(base: str) -> str:
        return OllamaLLM(model=SMALL, base_url=base, temperature=0, seed=3).invoke("def f(")

    assert pair.both(complete)[0] == pair.both(complete)[1]

    def embed(base: str) -> list[list[float]]:
        return OllamaEmbeddings(model=EMBED, base_url=base).embed_documents(["doc one", "doc two"])

    direct_e, through_e = pair.both(embed)
    assert through_e == direct_e


# ------------------------------------------------------------ llama-index
def test_llama_index_llm_and_embeddings(pair: Pair) -> None:
    def complete(base: str) -> str:
        # asks /api/show for the context window first, then chats with it as num_ctx
        llm = LlamaIndexOllama(model=SMALL, base_url=base, request_timeout=30, temperature=0)
        return llm.complete("def add(a, b):").text

    direct, through = pair.both(complete)
    assert through == direct
    assert pair.sent("/api/chat")[-1]["options"]["num_ctx"] == 32768  # the model's, not the profile's 4096

    alias = LlamaIndexOllama(model="chat", base_url=pair.gateway, request_timeout=30, temperature=0)
    assert alias.metadata.context_window == 32768  # /api/show resolved the alias (item 4)
    assert alias.complete("hi").text

    def embed(base: str) -> tuple[list[float], list[list[float]]]:
        e = OllamaEmbedding(model_name=EMBED, base_url=base)
        return e.get_text_embedding("one"), e.get_text_embedding_batch(["one", "two", "three"])

    direct_e, through_e = pair.both(embed)
    assert through_e == direct_e


# ------------------------------------------------------------ HTTP details every client relies on
def test_plain_http_details(pair: Pair) -> None:
    def root(base: str) -> tuple[bytes, str]:
        with urllib.request.urlopen(base + "/", timeout=10) as r:  # what shell scripts and apps do
            return r.read(), r.headers["Content-Type"]

    assert pair.both(root)[0] == pair.both(root)[1] == (b"Ollama is running", "text/plain; charset=utf-8")

    def heads(base: str) -> list[bool]:
        out = []
        for path in ("/api/version", "/api/ps"):
            got = httpx.get(base + path, trust_env=False)
            head = httpx.head(base + path, trust_env=False)
            out.append(head.headers.get("content-length") == str(len(got.content)))
        return out

    assert pair.both(heads) == ([True, True], [True, True])

    def ctype(base: str) -> list[str]:
        out = []
        for path, body in (
            ("/api/generate", {"model": SMALL, "prompt": "ct", "stream": False, "options": DET}),
            ("/v1/embeddings", {"model": EMBED, "input": "ct"}),
        ):
            out.append(httpx.post(base + path, json=body, timeout=30, trust_env=False).headers["content-type"])
        return out

    direct, through = pair.both(ctype)
    assert through == direct


def test_a_cached_stream_parses_line_by_line(pair: Pair) -> None:
    """Each NDJSON line of a replayed stream is a whole JSON document (naive line readers)."""
    body = {"model": SMALL, "prompt": "lines", "options": DET}

    def lines(base: str) -> list[dict[str, Any]]:
        with httpx.stream("POST", base + "/api/generate", json=body, timeout=30, trust_env=False) as r:
            return [json.loads(line) for line in r.iter_lines() if line]

    direct = lines(pair.direct)
    lines(pair.gateway)
    replayed = lines(pair.gateway)  # from the cache
    assert [d["response"] for d in replayed] == [d["response"] for d in direct]
    assert replayed[-1]["done"] is True and replayed[-1]["eval_count"] == direct[-1]["eval_count"]
