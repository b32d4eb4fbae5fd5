"""The real LightRAG API server (lightrag-hku from PyPI) behind powergate, its model calls through powergate.

One LightRAG for the module (its venv is created on first use, see tests/reallightrag):
its extraction and embedding calls go to powergate's bulk lane, its keyword and
answer calls to the chat lane, powergate forwards them to the simulated Ollama.
The simulated model quotes the FACT-xxx markers of its prompt, so an answer shows
which documents LightRAG retrieved. LightRAG's own answer cache is off, as the
doctor recommends (it ignores the documents); powergate's caches stand in for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config import load_settings
from agent.server import AgentServer
from tests.conftest import free_port, wait_for
from tests.reallightrag import LightRAGServer, wait_pipeline_idle
from tests.simollama import SimOllama, SimServer

pytestmark = pytest.mark.slow

WATCH_INTERVAL_S = 1.0  # [power] interval_s: the profile's sampling period, and the corpus watch's


class Stack:
    def __init__(self, sim: SimServer, agent: AgentServer, lightrag: LightRAGServer) -> None:
        self.sim = sim
        self.agent = agent
        self.lightrag = lightrag
        self.pg = f"http://127.0.0.1:{agent.settings.server.port}"
        self.front = f"{self.pg}/lightrag"
        self.client = httpx.Client(timeout=120, trust_env=False)

    @property
    def rag(self) -> Any:
        return self.agent.runtime.lightrag if self.agent.runtime else None

    def status(self) -> dict[str, Any]:
        return dict(self.client.get(self.pg + "/agent/status").json()["lightrag"])

    def insert(self, base: str, texts: list[str], sources: list[str]) -> None:
        r = self.client.post(f"{base}/documents/texts", json={"texts": texts, "file_sources": sources})
        assert r.status_code == 200, r.text

    def processed(self, base: str) -> int:
        return int(self.client.get(f"{base}/documents/status_counts").json()["status_counts"].get("processed", 0))

    def query(self, q: str, path: str = "/query", **extra: Any) -> httpx.Response:
        return self.client.post(self.front + path, json={"query": q, "mode": "naive", **extra})

    def model_calls(self) -> int:
        return len(self.sim.sim.inference_log())

    def chat_calls(self) -> int:
        return sum(1 for e in self.sim.sim.inference_log() if e.path == "/api/chat")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("lightrag")
    sim = SimServer(SimOllama()).start()
    lport = free_port()
    power = tmp / "power.json"
    power.write_text(json.dumps({"plugged": False, "percent": 80, "cpu_percent": 5, "ram_available_mb": 8000}))
    cfg = tmp / "powergate.toml"
    cfg.write_text(
        f'[lightrag]\nurl = "http://127.0.0.1:{lport}"\n'
        f'[power]\nsource = "file:{power.as_posix()}"\ninterval_s = {WATCH_INTERVAL_S}\n'
    )
    settings = load_settings(
        config_file=cfg,
        data_dir=tmp / "data",
        host="127.0.0.1",
        port=free_port(),
        upstreams=[sim.url],
        profile="balanced",
    )
    agent = AgentServer(settings)
    agent.start()
    pg = f"http://127.0.0.1:{settings.server.port}"
    lightrag = LightRAGServer(
        tmp / "lightrag",
        lport,
        llm_host=f"{pg}/lane/bulk",
        extra_env={
            "QUERY_LLM_BINDING_HOST": f"{pg}/lane/chat",
            "KEYWORD_LLM_BINDING_HOST": f"{pg}/lane/chat",
            "ENABLE_LLM_CACHE": "false",
            # the simulated embeddings carry no meaning: every chunk counts as related
            "COSINE_THRESHOLD": "-1",
        },
    )
    try:
        lightrag.start()
        s = Stack(sim, agent, lightrag)
        yield s
        s.client.close()
    finally:
        lightrag.stop()
        agent.stop()
        sim.stop()


def test_lightrag_runs_offline_and_its_model_calls_come_through_powergate(stack: Stack) -> None:
    health = stack.client.get(stack.front + "/health").json()
    conf = health["configuration"]
    assert health["core_version"] == "1.5.7"
    assert conf["llm_binding_host"].endswith("/lane/bulk") and conf["embedding_binding_host"].endswith("/lane/bulk")
    assert conf["role_llm_config"]["query"]["host"].endswith("/lane/chat")
    # the watch's first full look (a poll during LightRAG's start-up may have seen part of it)
    assert wait_for(lambda: bool(stack.status()["identity"]), timeout=30 * WATCH_INTERVAL_S, interval=0.1)
    assert stack.status()["identity"]["llm_model"] == conf["llm_model"]
    before = stack.model_calls()
    stack.insert(stack.front, ["Deployment keys live in FACT-vault01 under the ops folder. " * 4], ["ops.txt"])
    wait_pipeline_idle(stack.client, stack.front, processed=1)
    calls = stack.sim.sim.inference_log()[before:]
    assert {e.path for e in calls} >= {"/api/chat", "/api/embed"}
    agents = {e.headers.get("user-agent", "").split("/")[0] for e in calls}
    assert agents == {"ollama-python"}  # LightRAG's Ollama client, through powergate's lane
    # what status, the CLI and Prometheus say about it
    from agent.cli import _fmt_status

    text = _fmt_status(stack.client.get(stack.pg + "/agent/status").json())
    assert f"lightrag {stack.lightrag.url}: reachable, LightRAG 1.5.7" in text and "1 documents" in text
    metrics = stack.client.get(stack.pg + "/metrics").text
    assert "powergate_lightrag_up 1.0" in metrics and 'powergate_lightrag_documents{status="processed"} 1.0' in metrics


def test_second_identical_query_is_a_hit_in_every_form(stack: Stack) -> None:
    stack.insert(stack.front, ["The release train leaves on Fridays, see FACT-train02. " * 4], ["train.txt"])
    wait_pipeline_idle(stack.client, stack.front, processed=2)
    q = "When does the release train leave?"
    for path in ("/query", "/query/data", "/query/stream"):
        first, second = stack.query(q, path), stack.query(q, path)
        assert first.status_code == second.status_code == 200, first.text
        assert first.headers["x-powergate-cache"] == "miss", path
        assert second.headers["x-powergate-cache"] == "hit-memory", path
        assert second.headers["x-powergate-model"] == "lightrag"
        if path == "/query/stream":
            assert second.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(ln) for ln in second.text.splitlines() if ln.strip()]
            assert lines == [json.loads(ln) for ln in first.text.splitlines() if ln.strip()]
            assert "FACT-train02" in "".join(d.get("response", "") for d in lines)
        else:
            assert second.json() == first.json()
    # another answer-changing field is another entry
    assert stack.query(q, top_k=3).headers["x-powergate-cache"] == "miss"
    assert stack.rag.stats.hits >= 3


def test_identical_queries_in_flight_share_one_lightrag_call(stack: Stack) -> None:
    stack.sim.sim.token_delay_s = 0.05  # the answer takes a while: the others arrive meanwhile
    try:
        out: list[httpx.Response] = []
        q = "Which queries share one call? FACT-none"
        threads = [threading.Thread(target=lambda: out.append(stack.query(q))) for _ in range(3)]
        before = stack.chat_calls()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        stack.sim.sim.token_delay_s = 0.0
    assert sorted(r.headers["x-powergate-cache"] for r in out) == ["coalesced", "coalesced", "miss"]
    assert len({r.text for r in out}) == 1
    assert stack.chat_calls() - before == 1  # naive mode: one answer call for three clients


def test_a_document_inserted_through_powergate_is_in_the_next_answer(stack: Stack) -> None:
    q = "Where do the lighthouse keepers meet?"
    stack.insert(stack.front, ["Lighthouse keepers meet at FACT-pier03 on Mondays. " * 4], ["keepers.txt"])
    wait_pipeline_idle(stack.client, stack.front, processed=3)
    old = stack.query(q)
    assert old.headers["x-powergate-cache"] == "miss" and "FACT-bravo04" not in old.json()["response"]
    assert stack.query(q).headers["x-powergate-cache"] == "hit-memory"
    version = stack.status()["corpus_version"]
    stack.insert(stack.front, ["Since May the keepers meet at FACT-bravo04 instead. " * 4], ["keepers-new.txt"])
    wait_pipeline_idle(stack.client, stack.front, processed=4)
    assert stack.status()["corpus_version"] != version
    new = stack.query(q)
    assert new.headers["x-powergate-cache"] == "miss"
    assert "FACT-bravo04" in new.json()["response"]
    assert stack.query(q).headers["x-powergate-cache"] == "hit-memory"


def test_a_change_made_directly_in_lightrag_invalidates_within_one_watch_interval(stack: Stack) -> None:
    q = "What does the night shift guard?"
    assert stack.query(q).status_code == 200
    assert stack.query(q).headers["x-powergate-cache"] == "hit-memory"
    version = stack.status()["corpus_version"]
    direct = stack.lightrag.url  # not through powergate: nothing tells powergate but its watch
    done = stack.processed(direct) + 1
    stack.insert(direct, ["The night shift guards FACT-direct05 and nothing else. " * 4], ["night.txt"])
    wait_pipeline_idle(stack.client, direct, processed=done)
    # the first watch poll that starts after the change completed must see it
    polls = stack.rag.polls
    assert wait_for(lambda: stack.rag.polls >= polls + 2, timeout=30 * WATCH_INTERVAL_S, interval=0.05)
    assert stack.status()["corpus_version"] != version
    again = stack.query(q)
    assert again.headers["x-powergate-cache"] == "miss"
    assert "FACT-direct05" in again.json()["response"]


def test_every_endpoint_passes_through_streams_and_uploads_included(stack: Stack) -> None:
    # a multipart upload streamed to LightRAG: a document change like any other
    version = stack.status()["corpus_version"]
    done = stack.processed(stack.front) + 1
    files = {"file": ("upload.txt", b"Uploaded notes mention FACT-upload07 twice. FACT-upload07.", "text/plain")}
    up = stack.client.post(stack.front + "/documents/upload", files=files)
    assert up.status_code == 200 and up.json()["status"] == "success", up.text
    assert stack.status()["corpus_version"] != version
    wait_pipeline_idle(stack.client, stack.front, processed=done)
    # LightRAG's own Ollama emulation, streamed back as NDJSON chunk by chunk
    with stack.client.stream(
        "POST",
        stack.front + "/api/chat",
        json={
            "model": "lightrag:latest",
            "messages": [{"role": "user", "content": "/naive What do the notes mention?"}],
        },
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        assert r.headers["x-powergate-cache"] == "bypass"
        lines = [json.loads(ln) for ln in r.iter_lines() if ln.strip()]
    assert lines[-1]["done"] is True
    assert "FACT-upload07" in "".join(d.get("message", {}).get("content", "") for d in lines)
    # query strings and paths with parameters
    r = stack.client.get(stack.front + "/graph/label/list")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert stack.client.get(stack.front + "/nothing/here").status_code == 404


def test_listing_documents_keeps_the_cache_and_a_graph_edit_moves_it(stack: Stack) -> None:
    q = "What is on the shelf?"
    stack.query(q)
    version = stack.status()["corpus_version"]
    listed = stack.client.post(stack.front + "/documents/paginated", json={"page": 1, "page_size": 10})
    assert listed.status_code == 200 and listed.json()["documents"]
    assert stack.status()["corpus_version"] == version
    assert stack.query(q).headers["x-powergate-cache"] == "hit-memory"
    made = stack.client.post(
        stack.front + "/graph/entity/create",
        json={"entity_name": "Shelf", "entity_data": {"description": "holds FACT-shelf06", "entity_type": "thing"}},
    )
    assert made.status_code == 200, made.text
    assert stack.status()["corpus_version"] != version
    assert stack.query(q).headers["x-powergate-cache"] == "miss"


def test_model_lightrag_answers_editors_with_the_profiles_query_mode(stack: Stack) -> None:
    chat = {"model": "lightrag", "messages": [{"role": "user", "content": "Who keeps the deployment keys?"}]}
    before = stack.chat_calls()
    r = stack.client.post(stack.pg + "/api/chat", json=dict(chat, stream=False))
    assert r.status_code == 200 and r.headers["x-powergate-cache"] == "miss"
    assert r.json()["message"]["role"] == "assistant" and "FACT-vault01" in r.json()["message"]["content"]
    mix_calls = stack.chat_calls() - before  # balanced: mix = keyword extraction + answer
    r = stack.client.post(stack.pg + "/v1/chat/completions", json=dict(chat, stream=True))
    assert r.headers["x-powergate-cache"] == "hit-memory" and r.text.rstrip().endswith("data: [DONE]")
    assert stack.client.put(stack.pg + "/agent/profile", json={"profile": "battery-saver"}).status_code == 200
    try:
        before = stack.chat_calls()
        chat2 = {
            "model": "lightrag",
            "messages": [{"role": "user", "content": "Where are the keys kept?"}],
            "stream": False,
        }
        r = stack.client.post(stack.pg + "/api/chat", json=chat2)
        assert r.status_code == 200 and "FACT-vault01" in r.json()["message"]["content"]
        naive_calls = stack.chat_calls() - before
    finally:
        stack.client.put(stack.pg + "/agent/profile", json={"profile": "balanced"})
    assert (mix_calls, naive_calls) == (2, 1)
    bad = stack.client.post(stack.pg + "/api/generate", json={"model": "lightrag", "prompt": "x"})
    assert bad.status_code == 400 and "chat only" in bad.json()["error"]


def test_indexing_a_batch_keeps_suggestions_first_without_timeouts(stack: Stack) -> None:
    sim = stack.sim.sim
    sim.token_delay_s = 0.01  # every model call takes a while, as on a laptop
    start = stack.processed(stack.front)
    texts = [f"Batch document {i} describes FACT-batch{i:02d} in detail. " * 6 for i in range(6)]
    typed: list[tuple[float, str, int]] = []
    try:
        stack.insert(stack.front, texts, [f"batch{i}.txt" for i in range(6)])
        assert wait_for(lambda: bool(stack.status()["pipeline_busy"]) or stack.processed(stack.front) > start, 30)
        for i in range(12):
            prompt = f"def handler_{i}(request):\n    "
            t0 = time.time()
            r = stack.client.post(
                stack.pg + "/api/generate",
                json={
                    "model": "autocomplete",
                    "prompt": prompt,
                    "suffix": "\n",
                    "stream": False,
                    "options": {"num_predict": 4},
                },
            )
            typed.append((t0, prompt, r.status_code))
        wait_pipeline_idle(stack.client, stack.front, processed=start + 6, timeout=300)
    finally:
        sim.token_delay_s = 0.0
    assert all(status == 200 for _, _, status in typed)
    counts = stack.client.get(stack.front + "/documents/status_counts").json()["status_counts"]
    assert counts.get("failed", 0) == 0  # no LLM timeout, no failed document
    lightrag_calls = [e for e in sim.log if e.headers.get("user-agent", "").startswith("ollama-python")]
    suggestions = {e.body.get("prompt"): e for e in sim.log if e.path == "/api/generate" and e.body.get("suffix")}
    overtaken = []
    for t0, prompt, _ in typed:
        upstream = suggestions[prompt]
        # bulk calls that reached Ollama between the keystroke and the suggestion: at most the one
        # whose slot was granted as the suggestion arrived (one slot per upstream)
        overtaken.append(sum(1 for e in lightrag_calls if t0 < e.started < upstream.started))
    assert max(overtaken) <= 1, overtaken
    # and they did overlap: LightRAG's calls kept reaching Ollama while the editor typed
    window = (typed[0][0], suggestions[typed[-1][1]].started)
    assert sum(1 for e in lightrag_calls if window[0] < e.started < window[1]) >= 3


def test_a_second_index_of_the_same_documents_sends_almost_no_model_calls(stack: Stack) -> None:
    texts = [f"Reindex chapter {i}: the {w} protocol uses FACT-re{i} handshakes. " * 5 for i, w in enumerate("abcd")]
    sources = [f"re{i}.txt" for i in range(4)]
    wait_pipeline_idle(stack.client, stack.front)
    start = stack.processed(stack.front)
    before = stack.model_calls()
    stack.insert(stack.front, texts, sources)
    wait_pipeline_idle(stack.client, stack.front, processed=start + 4)
    first = stack.model_calls() - before
    # LightRAG forgets everything: the documents and its own LLM cache (extraction included)
    assert stack.client.request("DELETE", stack.front + "/documents").status_code == 200
    wait_pipeline_idle(stack.client, stack.front)
    assert stack.client.post(stack.front + "/documents/clear_cache", json={}).status_code == 200
    assert stack.processed(stack.front) == 0
    before = stack.model_calls()
    stack.insert(stack.front, texts, sources)
    wait_pipeline_idle(stack.client, stack.front, processed=4)
    second = stack.model_calls() - before
    assert first >= 8  # extraction (+ gleaning) chats and embeddings for four documents
    assert second <= first // 10, (first, second)
    answer = stack.query("Which handshakes does protocol c use?")
    assert answer.headers["x-powergate-cache"] == "miss" and "FACT-re2" in answer.json()["response"]


def test_doctor_reads_lightrags_configuration_and_prints_its_env(stack: Stack) -> None:
    from agent.services.lightrag_doctor import check_lightrag, context_sent, findings

    lines: list[str] = []
    ok = check_lightrag(stack.agent.settings, stack.pg, lines.append)
    text = "\n".join(lines)
    assert "LightRAG 1.5.7" in text
    for role in ("extract", "embeddings", "query", "keyword"):
        assert f"ok: {role} calls go through powergate" in text
    assert "ENABLE_LLM_CACHE" not in text.split("LightRAG .env")[0]  # it is off in this LightRAG
    # LightRAG asks 4096 tokens of context: every profile that sends less is a finding
    short = [p.name for p in stack.agent.settings.profiles.values() if context_sent(p, 4096) < 4096]
    # (ok also depends on the other checks of this LightRAG: only a shortfall must fail it)
    assert (not ok or not short) and all(f"{name} (" in text for name in short)
    assert ("fits every profile's num_ctx" in text) is not bool(short)
    assert f"LLM_BINDING_HOST={stack.pg}/lane/bulk" in text and "ENABLE_LLM_CACHE=false" in text
    # the same LightRAG, as most users run it: straight to Ollama, its own answer cache on
    health = stack.client.get(stack.lightrag.url + "/health").json()
    conf = health["configuration"]
    conf["enable_llm_cache"] = True
    for rc in [conf, *conf["role_llm_config"].values()]:
        key = "llm_binding_host" if rc is conf else "host"
        rc[key] = "http://localhost:11434"
    conf["embedding_binding_host"] = "http://localhost:11434"
    _, bad = findings(health, stack.pg, stack.agent.settings)
    assert sum("not through powergate" in b for b in bad) == 5  # extract, keyword, query, vlm, embeddings
    assert any("ENABLE_LLM_CACHE is on" in b for b in bad)


def test_api_key_is_added_or_forwarded_and_never_bypassed_by_the_cache(
    tmp_path: Path, sim: SimServer, make_gateway: Any
) -> None:
    port = free_port()
    with LightRAGServer(tmp_path / "keyed", port, llm_host=sim.url, api_key="s3cret") as lr:
        url = f"http://127.0.0.1:{port}"
        keyed = make_gateway(sim.url, config=f'[lightrag]\nurl = "{url}"\napi_key = "s3cret"\n')
        bare = make_gateway(sim.url, config=f'[lightrag]\nurl = "{url}"\n')
        q = {"query": "Anything there?", "mode": "naive"}
        with keyed.client() as c:
            # powergate adds its key: the client needs none, and the watch sees LightRAG
            assert c.get("/lightrag/health").status_code == 200
            assert [c.post("/lightrag/query", json=q).headers["x-powergate-cache"] for _ in range(2)] == [
                "miss",
                "hit-memory",
            ]
            assert c.get("/agent/status").json()["lightrag"]["identity"]["core_version"] == "1.5.7"
        with bare.client() as c:
            # no key in powergate: the client's own key is forwarded...
            ok = c.post("/lightrag/query", json=q, headers=lr.headers())
            assert ok.status_code == 200
            # ...a client without one is refused by LightRAG itself, never served from the cache
            denied = c.post("/lightrag/query", json=q)
            assert denied.status_code in (401, 403) and denied.headers["x-powergate-cache"] == "bypass"
            # and since the watch cannot read LightRAG, nothing is cached at all
            assert ok.headers["x-powergate-cache"] == "bypass"
            st = c.get("/agent/status").json()["lightrag"]
            assert "api_key" in st["error"] and st["identity"] == {}
