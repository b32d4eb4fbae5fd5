"""What powergate sends a llama.cpp or OpenAI-compatible server, and what it makes of the answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from agent.fim import TEMPLATES, template_for
from agent.gateway.aliases import ALIASES
from agent.upstreams import translate as tr
from tests.conftest import GatewayFactory, free_port, run_cli, wait_for
from tests.simopenai import SimModel, SimOpenAI, SimOpenAIServer

QWEN_PATH = "/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN = "qwen2.5-coder-1.5b-instruct-q4_k_m"


def config(url: str, model: str, kind: str = "auto", extra: str = "") -> str:
    return f'[[upstream]]\nurl = "{url}"\nkind = "{kind}"\n{extra}\n[models]\nsmall = "{model}"\nmedium = "{model}"\n'


@pytest.fixture
def llama() -> Iterator[SimOpenAIServer]:
    with SimOpenAIServer(SimOpenAI("llamacpp", (SimModel(QWEN_PATH),), slots=3)) as srv:
        yield srv


@pytest.fixture
def vllm() -> Iterator[SimOpenAIServer]:
    models = (SimModel("Qwen/Qwen2.5-Coder-7B"), SimModel("mistralai/Mistral-7B-Instruct-v0.3"))
    with SimOpenAIServer(SimOpenAI("openai", models)) as srv:
        yield srv


def test_llamacpp_fim_goes_to_infill_with_mapped_options(llama: SimOpenAIServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(config=config(llama.url, QWEN))
    body = {
        "model": QWEN,
        "prompt": "def f(",
        "suffix": "\n    return x",
        "stream": False,
        "keep_alive": "5m",
        "options": {"num_predict": 5, "temperature": 0.2, "top_k": 20, "seed": 7, "num_ctx": 8192, "stop": ["\n\n"]},
    }
    with gw.client() as c:
        r = c.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    sent = llama.api.log[-1]
    assert sent.path == "/infill"
    assert sent.body["input_prefix"] == "def f(" and sent.body["input_suffix"] == "\n    return x"
    assert sent.body["n_predict"] == 5 and sent.body["temperature"] == 0.2 and sent.body["top_k"] == 20
    assert sent.body["seed"] == 7 and sent.body["stop"] == ["\n\n"]
    assert "num_ctx" not in sent.body and "keep_alive" not in sent.body and "options" not in sent.body
    # the final answer's figures come from llama.cpp's timings (ms -> ns)
    assert doc["done_reason"] == "length" and doc["eval_count"] == 5
    assert doc["eval_duration"] == 5 * 10 * 1_000_000 and doc["prompt_eval_duration"] == 2_500_000


def test_llamacpp_fim_on_a_model_without_fim_tokens_is_ollamas_400(make_gateway: GatewayFactory) -> None:
    with SimOpenAIServer(SimOpenAI("llamacpp", (SimModel("/m/gemma-3-270m.gguf", fim=False),))) as srv:
        gw = make_gateway(config=config(srv.url, "gemma-3-270m"))
        with gw.client() as c:
            r = c.post("/api/generate", json={"model": "gemma-3-270m", "prompt": "a", "suffix": "b", "stream": False})
    assert r.status_code == 400 and r.json() == {"error": '"gemma-3-270m" does not support insert'}


def test_openai_fim_uses_the_family_template_never_suffix(vllm: SimOpenAIServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(config=config(vllm.url, "Qwen/Qwen2.5-Coder-7B"))
    with gw.client() as c:
        r = c.post(
            "/api/generate",
            json={"model": "Qwen/Qwen2.5-Coder-7B", "prompt": "a = ", "suffix": "\nprint(a)", "stream": False},
        )
        unknown = c.post(
            "/api/generate",
            json={"model": "mistralai/Mistral-7B-Instruct-v0.3", "prompt": "a", "suffix": "b", "stream": False},
        )
    assert r.status_code == 200, r.text
    sent = [e for e in vllm.api.log if e.path == "/v1/completions"][-1]
    assert "suffix" not in sent.body
    assert sent.body["prompt"] == "<|fim_prefix|>a = <|fim_suffix|>\nprint(a)<|fim_middle|>"
    assert unknown.status_code == 400
    assert unknown.json() == {"error": '"mistralai/Mistral-7B-Instruct-v0.3" does not support insert'}


def test_chat_tools_format_images_translated_both_ways(vllm: SimOpenAIServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(config=config(vllm.url, "Qwen/Qwen2.5-Coder-7B"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    client = ollama.Client(host=gw.url)
    try:
        r = client.chat(
            model="Qwen/Qwen2.5-Coder-7B",
            messages=[{"role": "user", "content": "weather?", "images": ["iVBORw0KGgo="]}],
            tools=tools,
            format="json",
        )
        streamed = list(
            client.chat(
                model="Qwen/Qwen2.5-Coder-7B", messages=[{"role": "user", "content": "w"}], tools=tools, stream=True
            )
        )
    finally:
        client.close()
    calls = r.message.tool_calls or []
    assert calls and calls[0].function.name == "get_weather" and calls[0].function.arguments == {"city": "Paris"}
    assert any(p.message.tool_calls for p in streamed) and streamed[-1].done
    sent = [e for e in vllm.api.log if e.path == "/v1/chat/completions"][0].body
    assert sent["response_format"] == {"type": "json_object"} and sent["tools"] == tools
    parts = sent["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "weather?"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="


def test_slots_from_props_unless_configured(llama: SimOpenAIServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(config=config(llama.url, QWEN))
    assert gw.runtime.upstreams.primary.scheduler.slots == 3
    pinned = make_gateway(config=config(llama.url, QWEN, kind="llamacpp", extra="max_concurrency = 1"))
    assert pinned.runtime.upstreams.primary.scheduler.slots == 1


def test_llamacpp_loading_is_reachable_and_its_503_relayed(make_gateway: GatewayFactory) -> None:
    with SimOpenAIServer(SimOpenAI("llamacpp", (SimModel(QWEN_PATH),), loading_s=60)) as srv:
        gw = make_gateway(config=config(srv.url, QWEN, kind="llamacpp"))
        with gw.client() as c:
            up = c.get("/agent/status").json()["upstreams"][0]
            r = c.post(
                "/api/chat", json={"model": QWEN, "messages": [{"role": "user", "content": "x"}], "stream": False}
            )
            o = c.post("/v1/chat/completions", json={"model": QWEN, "messages": [{"role": "user", "content": "x"}]})
    assert up["reachable"] is True and "loading" in up["error"]
    assert r.status_code == 503 and r.json() == {"error": "Loading model"}
    assert o.status_code == 503 and o.json()["error"]["message"] == "Loading model"


def test_lmstudio_ps_lists_only_loaded_models(make_gateway: GatewayFactory) -> None:
    models = (SimModel("qwen2.5-coder-7b-instruct"), SimModel("deepseek-coder-v2-lite-instruct"))
    with SimOpenAIServer(SimOpenAI("lmstudio", models)) as srv:
        gw = make_gateway(config=config(srv.url, "qwen2.5-coder-7b-instruct"))
        with gw.client() as c:
            ps = [m["name"] for m in c.get("/api/ps").json()["models"]]
            tags = [m["name"] for m in c.get("/api/tags").json()["models"]]
            version = c.get("/api/version").json()
            pull = c.post("/api/pull", json={"model": "x"})
    served = sorted(t for t in tags if t not in ALIASES)  # powergate lists its aliases too
    assert ps == ["qwen2.5-coder-7b-instruct"] and served == sorted(m.id for m in models)
    assert version["upstream"] == "openai" and version["version"]
    assert pull.status_code == 501 and "does not offer" in pull.json()["error"]


def test_warm_up_is_a_one_token_request(llama: SimOpenAIServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(config=config(llama.url, QWEN), profile="performance")
    up = gw.runtime.upstreams.primary
    import asyncio

    warmed = asyncio.run_coroutine_threadsafe(up.load(QWEN, "30m", {"num_ctx": 8192}), gw.server.loop).result(10)
    assert warmed is True and wait_for(lambda: any(e.body.get("max_tokens") == 1 for e in llama.api.log))
    sent = [e.body for e in llama.api.log if e.body.get("max_tokens") == 1][0]
    assert "keep_alive" not in sent and "num_ctx" not in sent


def test_one_fim_table_for_typeahead_and_upstreams() -> None:
    from agent.cache.typeahead import FIM_TEMPLATES, split_fim

    assert {f for fams, *_ in FIM_TEMPLATES for f in fams.split("/")} == {t.family for t in TEMPLATES}
    for t in TEMPLATES:
        prompt = t.render("PRE", "SUF")
        prefix, _ctx = split_fim(prompt) or ("", None)
        assert prefix == "PRE", t.family
    assert template_for("qwen2.5-coder:7b") is not None and template_for("llama3.1:8b") is None
    assert template_for("TheBloke/CodeLlama-7B-GGUF").family == "codellama"  # type: ignore[union-attr]


def test_stream_translator_framing() -> None:
    t = tr.StreamTranslator("generate", "m")
    out = t.feed(b": ping") + t.feed(b"") + t.feed(b'data: {"choices":[{"text":"a","finish_reason":null}]}')
    out += t.feed(
        b'data: {"choices":[{"text":"","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )
    out += t.feed(b"data: [DONE]")
    docs = [json.loads(x) for x in out.splitlines()]
    assert [d["done"] for d in docs] == [False, True]
    assert docs[0]["response"] == "a" and docs[1]["done_reason"] == "length" and docs[1]["eval_count"] == 1
    assert docs[1]["prompt_eval_count"] == 3 and t.feed(b"data: [DONE]") == b""


def test_error_messages_from_every_shape() -> None:
    assert tr.error_message(b'{"error":{"code":503,"message":"Loading model"}}', 503, "x") == "Loading model"
    assert tr.error_message(b'{"object":"error","message":"bad","code":400}', 400, "x") == "bad"
    assert tr.error_message(b'{"detail":"nope"}', 422, "x") == "nope"
    assert tr.error_message(b"gateway down", 502, "the server") == "the server answered 502: gateway down"


def test_probe_recognises_each_kind(llama: SimOpenAIServer, vllm: SimOpenAIServer) -> None:
    import asyncio

    from agent.upstreams.pool import probe

    async def kind(url: str) -> str | None:
        async with httpx.AsyncClient(base_url=url) as c:
            return await probe(c)

    assert asyncio.run(kind(llama.url)) == "llamacpp"
    assert asyncio.run(kind(vllm.url)) == "openai"
    assert asyncio.run(kind("http://127.0.0.1:9")) is None


def test_doctor_names_the_kind_and_the_models_it_lacks(llama: SimOpenAIServer, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[models]\nsmall = "{QWEN}"\nmedium = "{QWEN}"\nlarge = "starcoder2-15b"\nembed = "{QWEN}"\n')
    r = run_cli(
        "doctor", "--config", str(cfg), env={"POWERGATE_UPSTREAM": llama.url, "POWERGATE_PORT": str(free_port())}
    )
    assert f"upstream {llama.url}: llama.cpp server (kind llamacpp), 1 models: {QWEN_PATH}" in r.stdout, r.stdout
    assert "model starcoder2-15b is not served there" in r.stdout and f"model {QWEN} is not" not in r.stdout
    assert r.returncode == 1
