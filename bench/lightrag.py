"""LightRAG directly on Ollama vs LightRAG through powergate, side by side in one run.

The real LightRAG API server (tests/reallightrag: its own venv, offline launcher)
indexes a corpus of real text written by others (the README each installed
package ships in its METADATA: httpx, starlette, uvicorn, redis...), then answers a
set of questions several times; then every document is deleted, LightRAG's cache
cleared, and the same corpus indexed again. Meanwhile an editor asks for
suggestions. Both contenders talk to the same realistic simulated Ollama (~30 ms
per token, one generation at a time), one after the other:

- direct: LightRAG as most run it, LLM_BINDING_HOST at Ollama, its own caches on;
  the editor's suggestions go straight to Ollama;
- powergate: LightRAG's .env as `powergate doctor` prints it (bulk lane for
  extraction and embeddings, chat lane for queries, its answer cache off), its
  queries through /lightrag/, the suggestions through powergate.
"""

from __future__ import annotations

import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import free_port, summary_ms
from tests.reallightrag import LightRAGServer, wait_pipeline_idle
from tests.simollama import SimServer

# Packages whose README (their METADATA's long description) is the corpus: all are
# dependencies of powergate or its tests, so they are installed wherever the bench runs.
CORPUS_PACKAGES = ("httpx", "starlette", "uvicorn", "redis", "diskcache", "platformdirs", "psutil", "pystray")
MAX_DOC_CHARS = 6000  # per document: keeps a full run within minutes on the simulated laptop
QUESTIONS = (
    "How do I make an async HTTP request?",
    "Which Python versions are supported?",
    "How is a cache entry expired?",
    "How do I find the user's config directory?",
    "How do I read CPU usage?",
    "How do I run an ASGI server?",
)
# The editor asks for the context LightRAG's OLLAMA_LLM_NUM_CTX sets, so that Ollama never reloads
# the shared model between them (powergate would normalise it anyway): only scheduling differs.
SUGGESTION = {
    "model": "qwen2.5-coder:1.5b",
    "suffix": "\n",
    "stream": False,
    "options": {"num_predict": 8, "num_ctx": 4096},
}


def corpus() -> list[tuple[str, str]]:
    """(file name, text) of each package's own README, as shipped in its METADATA."""
    docs = []
    for name in CORPUS_PACKAGES:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        body = meta.get_payload() or meta.get("Description") or ""  # type: ignore[attr-defined]
        if len(body.strip()) > 200:
            docs.append((f"{name}-README.txt", body.strip()[:MAX_DOC_CHARS]))
    return docs


def _index(client: httpx.Client, base: str, docs: list[tuple[str, str]], timeout: float) -> float:
    t0 = time.perf_counter()
    r = client.post(
        f"{base}/documents/texts", json={"texts": [d[1] for d in docs], "file_sources": [d[0] for d in docs]}
    )
    r.raise_for_status()
    wait_pipeline_idle(client, base, processed=len(docs), timeout=timeout)
    return time.perf_counter() - t0


def _type_while(busy: threading.Event, url: str, out: list[float]) -> None:
    """An editor: one suggestion every 0.3 s while the indexing runs."""
    with httpx.Client(timeout=600, trust_env=False) as c:
        i = 0
        while not busy.is_set():
            body = dict(SUGGESTION, prompt=f"def handler_{i}(request):\n    ")
            t0 = time.perf_counter()
            if c.post(url + "/api/generate", json=body).status_code == 200:
                out.append(time.perf_counter() - t0)
            i += 1
            busy.wait(0.3)


def _contender(
    name: str,
    sim: SimServer,
    lightrag: LightRAGServer,
    query_base: str,
    editor_url: str,
    docs: list[tuple[str, str]],
    repeats: int,
    timeout: float,
) -> dict[str, Any]:
    log = sim.sim.log
    # both models loaded before the clock starts, with the runner options LightRAG asks for
    warm = httpx.Client(timeout=timeout, trust_env=False)
    warm.post(sim.url + "/api/generate", json=dict(SUGGESTION, prompt="x"))
    warm.post(sim.url + "/api/embed", json={"model": "nomic-embed-text", "input": ["x"]})
    warm.close()
    loads0 = sim.sim.loads
    with httpx.Client(timeout=timeout, trust_env=False) as c:
        calls0 = len(log)
        done = threading.Event()
        typed: list[float] = []
        editor = threading.Thread(target=_type_while, args=(done, editor_url, typed))
        editor.start()
        try:
            index_s = _index(c, lightrag.url, docs, timeout)
        finally:
            done.set()
            editor.join()
        index_calls = sum(1 for e in log[calls0:] if e.headers.get("user-agent", "").startswith("ollama-python"))
        miss: list[float] = []
        hit: list[float] = []
        for q in QUESTIONS:
            for i in range(repeats):
                t0 = time.perf_counter()
                r = c.post(f"{query_base}/query", json={"query": q, "mode": "mix"})
                r.raise_for_status()
                (miss if i == 0 else hit).append(time.perf_counter() - t0)
        # LightRAG forgets: documents and its LLM cache (extraction included); index again
        c.request("DELETE", f"{lightrag.url}/documents").raise_for_status()
        wait_pipeline_idle(c, lightrag.url, timeout=timeout)
        c.post(f"{lightrag.url}/documents/clear_cache", json={}).raise_for_status()
        calls1 = len(log)
        reindex_s = _index(c, lightrag.url, docs, timeout)
        reindex_calls = sum(1 for e in log[calls1:] if e.headers.get("user-agent", "").startswith("ollama-python"))
    return {
        "contender": name,
        "index_s": round(index_s, 2),
        "index_model_calls": index_calls,
        "suggestions_while_indexing": summary_ms(typed),
        "query_miss": summary_ms(miss),
        "query_repeat": summary_ms(hit),
        "reindex_s": round(reindex_s, 2),
        "reindex_model_calls": reindex_calls,
        "model_loads": sim.sim.loads - loads0,
    }


def run(sim: SimServer, workdir: Path, repeats: int = 4, timeout: float = 1800.0) -> dict[str, Any]:
    """Both contenders against `sim` (in this process, so its request log counts model calls)."""
    docs = corpus()
    common = {"MAX_ASYNC": "4", "COSINE_THRESHOLD": "-1"}  # the simulated embeddings carry no meaning
    direct = LightRAGServer(workdir / "direct", free_port(), llm_host=sim.url, extra_env=common)
    through_port = free_port()
    out: dict[str, Any] = {"documents": [d[0] for d in docs], "chars": sum(len(d[1]) for d in docs)}
    with direct:
        out["direct"] = _contender("direct", sim, direct, direct.url, sim.url, docs, repeats, timeout)
    config = f'[lightrag]\nurl = "http://127.0.0.1:{through_port}"\n'
    with harness.powergate(sim.url, config=config, profile="balanced") as pg:
        through = LightRAGServer(
            workdir / "powergate",
            through_port,
            llm_host=f"{pg.url}/lane/bulk",
            extra_env=dict(
                common,
                QUERY_LLM_BINDING_HOST=f"{pg.url}/lane/chat",
                KEYWORD_LLM_BINDING_HOST=f"{pg.url}/lane/chat",
                ENABLE_LLM_CACHE="false",
                LLM_TIMEOUT="900",
            ),
        )
        with through:
            out["powergate"] = _contender(
                "powergate", sim, through, f"{pg.url}/lightrag", pg.url, docs, repeats, timeout
            )
    d, p = out["direct"], out["powergate"]
    out["reindex_calls_saved"] = d["reindex_model_calls"] - p["reindex_model_calls"]
    out["reindex_time_saved_s"] = round(d["reindex_s"] - p["reindex_s"], 2)
    out["suggestion_p95_ratio_direct_over_powergate"] = round(
        d["suggestions_while_indexing"]["p95_ms"] / max(p["suggestions_while_indexing"]["p95_ms"], 1e-9), 2
    )
    return out
