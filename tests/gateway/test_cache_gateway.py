"""The cache as an editor sees it: headers, tiers, typeahead, coalescing, embeddings."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import Gateway, GatewayFactory, RedisServer, closed_port_url, run_cli, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"
GEN = {
    "model": SMALL,
    "prompt": "def add(a, b):\n    ",
    "suffix": "\n\nprint(add(1, 2))",
    "options": {"num_predict": 12},
}


def post(gw: Gateway, path: str, body: dict, **kw: object) -> httpx.Response:
    r = httpx.post(gw.url + path, json=body, timeout=30, **kw)  # type: ignore[arg-type]
    return r


def upstream_calls(sim: SimServer, path: str = "/api/generate") -> int:
    """Real work sent to Ollama (not model warm-ups, which have an empty prompt)."""
    return sum(1 for e in sim.sim.inference_log() if e.path == path)


def test_miss_then_memory_hit_stream_and_whole_share_the_entry(gateway: Gateway, sim: SimServer) -> None:
    streamed = post(gateway, "/api/generate", dict(GEN, stream=True))
    assert streamed.headers["x-powergate-cache"] == "miss"
    lines = [json.loads(x) for x in streamed.text.splitlines()]
    text = "".join(x["response"] for x in lines)
    whole = post(gateway, "/api/generate", dict(GEN, stream=False))
    assert whole.headers["x-powergate-cache"] == "hit-memory"
    assert whole.json()["response"] == text and whole.json()["done"] is True
    again = post(gateway, "/api/generate", dict(GEN, stream=True))
    assert again.headers["x-powergate-cache"] == "hit-memory"
    assert again.headers["content-type"] == "application/x-ndjson"
    replayed = [json.loads(x) for x in again.text.splitlines()]
    # the same answer, stamped with the time it was served (Ollama stamps every answer)
    assert [dict(x, created_at="") for x in replayed] == [dict(x, created_at="") for x in lines]
    assert all(r["created_at"] > o["created_at"] for r, o in zip(replayed, lines, strict=True))
    assert upstream_calls(sim) == 1
    with ollama.Client(host=gateway.url) as c:
        assert c.generate(**GEN).response == text  # type: ignore[arg-type]
    assert upstream_calls(sim) == 1


def test_disk_hit_after_restart(sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    gw1 = make_gateway(sim.url, data_dir=data)
    first = post(gw1, "/api/generate", dict(GEN, stream=False)).json()["response"]
    gw1.server.stop()
    gw2 = make_gateway(sim.url, data_dir=data)
    r = post(gw2, "/api/generate", dict(GEN, stream=False))
    assert r.headers["x-powergate-cache"] == "hit-disk" and r.json()["response"] == first
    assert post(gw2, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "hit-memory"
    assert upstream_calls(sim) == 1


def test_redis_tier_shared_between_machines(
    sim: SimServer, make_gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    cfg = f'[cache]\nredis_url = "{redis_server.url}"\nredis_key = "team-key"\n'
    a = make_gateway(sim.url, config=cfg)
    b = make_gateway(sim.url, config=cfg)
    text = post(a, "/api/generate", dict(GEN, stream=False)).json()["response"]
    assert wait_for(lambda: httpx.get(a.url + "/agent/status").json()["cache"]["tiers"][2]["writes"] == 1)
    r = post(b, "/api/generate", dict(GEN, stream=False))
    assert r.headers["x-powergate-cache"] == "hit-redis" and r.json()["response"] == text
    assert upstream_calls(sim) == 1
    status = httpx.get(b.url + "/agent/status").json()
    redis_tier = next(t for t in status["cache"]["tiers"] if t["name"] == "redis")
    assert redis_tier["available"] is True and redis_tier["hits"] == 1


def test_redis_down_never_fails_a_request(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(
        sim.url,
        config=f'[cache]\nredis_url = "redis://127.0.0.1:{closed_port_url().rsplit(":", 1)[1]}/0"\nredis_key = "k"\n',
    )
    assert post(gw, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "miss"
    assert post(gw, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "hit-memory"
    tiers = {t["name"]: t for t in httpx.get(gw.url + "/agent/status").json()["cache"]["tiers"]}
    assert tiers["redis"]["available"] is False and tiers["redis"]["error"]


def test_typeahead_answers_the_rest_of_a_suggestion(gateway: Gateway, sim: SimServer) -> None:
    raw = {"model": SMALL, "raw": True, "stream": False, "options": {"temperature": 0, "num_predict": 10}}
    fim = "<|fim_prefix|>def add(a, b):\n    {}<|fim_suffix|>\n\nprint(add(1, 2))<|fim_middle|>"
    first = post(gateway, "/api/generate", dict(raw, prompt=fim.format(""))).json()["response"]
    typed = first[:7]
    r = post(gateway, "/api/generate", dict(raw, prompt=fim.format(typed)))
    assert r.headers["x-powergate-cache"] == "typeahead"
    assert r.json()["response"] == first[7:] and r.json()["done"] is True
    with ollama.Client(host=gateway.url) as c:
        parts = list(
            c.generate(model=SMALL, raw=True, prompt=fim.format(first[:9]), options=raw["options"], stream=True)
        )
    assert "".join(p.response for p in parts) == first[9:]
    # typing something else goes upstream
    other = post(gateway, "/api/generate", dict(raw, prompt=fim.format("zzz")))
    assert other.headers["x-powergate-cache"] == "miss"
    assert upstream_calls(sim) == 2


def test_openai_completion_typeahead(gateway: Gateway, sim: SimServer) -> None:
    body = {"model": SMALL, "prompt": "import os\n", "suffix": "\n", "max_tokens": 10, "temperature": 0}
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x") as c:
        first = c.completions.create(**body).choices[0].text  # type: ignore[arg-type]
        raw = c.completions.with_raw_response.create(**dict(body, prompt="import os\n" + first[:4]))  # type: ignore[arg-type]
        assert raw.headers["x-powergate-cache"] == "typeahead"
        assert raw.parse().choices[0].text == first[4:]


def test_identical_requests_in_flight_share_one_upstream_call(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(token_delay_s=0.03, default_tokens=20)) as slow:
        gw = make_gateway(slow.url)
        results: list[tuple[str, str]] = []

        def call(stream: bool) -> None:
            r = post(gw, "/api/generate", dict(GEN, stream=stream))
            text = "".join(json.loads(x)["response"] for x in r.text.splitlines()) if stream else r.json()["response"]
            results.append((r.headers["x-powergate-cache"], text))

        threads = [threading.Thread(target=call, args=(i % 2 == 0,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(1 for e in slow.sim.inference_log() if e.path == "/api/generate") == 1
        outcomes = sorted(o for o, _ in results)
        assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 5
        assert len({t for _, t in results}) == 1  # every client got the whole answer from the first byte


def test_aborted_stream_stores_nothing(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(token_delay_s=0.05, default_tokens=20)) as slow:
        gw = make_gateway(slow.url)
        with (
            httpx.Client(timeout=30) as c,
            c.stream("POST", gw.url + "/api/generate", json=dict(GEN, stream=True)) as r,
        ):
            next(r.iter_lines())
        entry = slow.sim.inference_log()[-1]
        assert wait_for(lambda: entry.finished is not None, timeout=2)
        assert entry.cancelled
        r2 = post(gw, "/api/generate", dict(GEN, stream=False))
        assert r2.headers["x-powergate-cache"] == "miss"


def test_cache_control_no_cache_and_no_store(gateway: Gateway, sim: SimServer) -> None:
    assert (
        post(gateway, "/api/generate", dict(GEN, stream=False), headers={"Cache-Control": "no-store"}).headers[
            "x-powergate-cache"
        ]
        == "miss"
    )
    assert (
        post(gateway, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "miss"
    )  # nothing was stored
    assert post(gateway, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "hit-memory"
    r = post(gateway, "/api/generate", dict(GEN, stream=False), headers={"Cache-Control": "no-cache"})
    assert r.headers["x-powergate-cache"] == "miss"
    assert upstream_calls(sim) == 3


def test_chat_regenerate_is_not_cached_by_default(gateway: Gateway, sim: SimServer) -> None:
    chat = {"model": SMALL, "messages": [{"role": "user", "content": "explain"}], "stream": False}
    a = post(gateway, "/api/chat", chat)
    b = post(gateway, "/api/chat", chat)
    assert a.headers["x-powergate-cache"] == b.headers["x-powergate-cache"] == "bypass"
    det = dict(chat, options={"temperature": 0})
    assert post(gateway, "/api/chat", det).headers["x-powergate-cache"] == "miss"
    hit = post(gateway, "/api/chat", det)
    assert hit.headers["x-powergate-cache"] == "hit-memory" and hit.json()["message"]["role"] == "assistant"
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x") as c:
        msgs = [{"role": "user", "content": "hi"}]
        one = c.chat.completions.create(model=SMALL, messages=msgs, seed=4)  # type: ignore[arg-type]
        two = c.chat.completions.with_raw_response.create(model=SMALL, messages=msgs, seed=4)  # type: ignore[arg-type]
        assert two.headers["x-powergate-cache"] == "hit-memory"
        assert two.parse().choices[0].message.content == one.choices[0].message.content
        streamed = c.chat.completions.create(model=SMALL, messages=msgs, seed=4, stream=True)  # type: ignore[arg-type]
        assert (
            "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
            == one.choices[0].message.content
        )


@pytest.mark.parametrize(("mode", "outcome"), [("always", "hit-memory"), ("never", "bypass")])
def test_chat_cache_modes(sim: SimServer, make_gateway: GatewayFactory, mode: str, outcome: str) -> None:
    gw = make_gateway(sim.url, config=f'[cache]\nchat = "{mode}"\n')
    chat = {
        "model": SMALL,
        "messages": [{"role": "user", "content": "x"}],
        "stream": False,
        "options": {"temperature": 0},
    }
    post(gw, "/api/chat", chat)
    assert post(gw, "/api/chat", chat).headers["x-powergate-cache"] == outcome


def test_upstream_errors_are_not_cached(gateway: Gateway, sim: SimServer) -> None:
    sim.sim.fail_next.append((500, "llama runner process has terminated"))
    r = post(gateway, "/api/generate", dict(GEN, stream=False))
    assert r.status_code == 500 and "terminated" in r.json()["error"]
    assert post(gateway, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "miss"


def test_clear_empties_every_tier(gateway: Gateway, sim: SimServer) -> None:
    post(gateway, "/api/generate", dict(GEN, stream=False))
    port = gateway.server.settings.server.port
    r = run_cli("cache", "stats", env={"POWERGATE_PORT": str(port)})
    assert r.returncode == 0 and "memory" in r.stdout and "disk" in r.stdout
    r = run_cli("cache", "clear", env={"POWERGATE_PORT": str(port)})
    assert r.returncode == 0 and "cleared" in r.stdout
    assert post(gateway, "/api/generate", dict(GEN, stream=False)).headers["x-powergate-cache"] == "miss"
    assert httpx.post(gateway.url + "/agent/cache/clear").json()["cleared"]["memory"] == 1


def test_embeddings_cached_per_input(gateway: Gateway, sim: SimServer) -> None:
    texts = [f"chunk {i}" for i in range(100)]
    with ollama.Client(host=gateway.url) as c:
        known = c.embed(model="nomic-embed-text", input=texts[:97]).embeddings
        sim.sim.log.clear()
        r = post(gateway, "/api/embed", {"model": "nomic-embed-text", "input": texts})
        assert r.headers["x-powergate-cache-inputs"] == "97/100"
        embs = r.json()["embeddings"]
        assert embs[:97] == known and len(embs) == 100
        up = [e for e in sim.sim.log if e.path == "/api/embed"]
        assert len(up) == 1 and up[0].body["input"] == texts[97:]
        # the same vectors as Ollama would give, in order
        direct = ollama.Client(host=sim.url)
        assert embs[98] == direct.embed(model="nomic-embed-text", input=texts[98]).embeddings[0]
        direct.close()
        again = post(gateway, "/api/embed", {"model": "nomic-embed-text", "input": texts})
        assert (
            again.headers["x-powergate-cache"] == "hit-memory"
            and again.headers["x-powergate-cache-inputs"] == "100/100"
        )
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x") as oc:
        sim.sim.log.clear()
        data = oc.embeddings.create(model="nomic-embed-text", input=texts[:3]).data  # base64 on the wire
        for got, want in zip(data, embs[:3], strict=True):
            assert got.embedding == pytest.approx(want, abs=1e-6)
        assert not [e for e in sim.sim.log if "embed" in e.path]


def test_encrypted_cache_has_no_plaintext_on_disk(sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path) -> None:
    data = tmp_path / "enc"
    gw = make_gateway(sim.url, config="[cache]\nencrypt = true\n", data_dir=data)
    text = post(gw, "/api/generate", dict(GEN, stream=False, options={"temperature": 0})).json()["response"]
    gw.server.stop()
    blobs = b"".join(f.read_bytes() for f in (data / "cache").rglob("*") if f.is_file())
    assert blobs and text.encode() not in blobs and b"def add" not in blobs


def test_profile_switch_resizes_the_memory_tier(gateway: Gateway) -> None:
    httpx.put(gateway.url + "/agent/profile", json={"profile": "battery-saver"})
    cache = gateway.runtime.cache
    # one budget per profile, shared by the stored answers and the typeahead index
    assert wait_for(lambda: cache.memory_budget == 32 * 1024 * 1024)
    assert cache.memory.max_bytes + cache.typeahead.max_bytes == 32 * 1024 * 1024
    httpx.put(gateway.url + "/agent/profile", json={"profile": "performance"})
    assert wait_for(lambda: cache.memory_budget == 256 * 1024 * 1024)
    assert cache.memory.max_bytes + cache.typeahead.max_bytes == 256 * 1024 * 1024
