"""Metrics: Prometheus text (parsed with prometheus-client's own parser), the JSON
figures, and recommendations triggered by real traffic."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"


def families(gw: Gateway) -> dict[str, object]:
    r = httpx.get(gw.url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def test_prometheus_text_has_the_figures(gateway: Gateway) -> None:
    body = {"model": SMALL, "prompt": "def f(", "suffix": "\n", "stream": False}
    for _ in range(3):
        httpx.post(gateway.url + "/api/generate", json=body, timeout=10)
    httpx.post(gateway.url + "/api/embed", json={"model": "embed", "input": ["a", "b"]}, timeout=10)
    fams = families(gateway)
    assert all(name.startswith("powergate_") for name in fams)
    hist = fams["powergate_request_duration_seconds"]
    assert hist.type == "histogram"  # type: ignore[attr-defined]
    counts = {(s.labels["endpoint"], s.labels["outcome"]): s.value for s in hist.samples if s.name.endswith("_count")}  # type: ignore[attr-defined]
    assert counts[("/api/generate", "miss")] == 1 and counts[("/api/generate", "hit-memory")] == 2
    assert counts[("/api/embed", "miss")] == 1
    hits = {
        s.labels["tier"]: s.value
        for s in fams["powergate_cache_hits"].samples
        if s.name == "powergate_cache_hits_total"
    }  # type: ignore[attr-defined]
    assert hits["memory"] == 2
    entries = {s.labels["tier"]: s.value for s in fams["powergate_cache_entries"].samples}  # type: ignore[attr-defined]
    assert entries["memory"] >= 3 and entries["disk"] >= 1
    prof = fams["powergate_profile"].samples[0]  # type: ignore[attr-defined]
    assert prof.labels["profile"] == "balanced" and prof.value == 1
    for name in (
        "powergate_time_to_first_byte_seconds",
        "powergate_typeahead_hits",
        "powergate_coalesced",
        "powergate_model_reloads_avoided",
        "powergate_upstream_up",
        "powergate_requests",
    ):
        assert name in fams, name


def test_metrics_json_percentiles_series_and_upstream_figures(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(token_delay_s=0.005, load_time_s=0.3, default_tokens=8)) as sim:
        gw = make_gateway(sim.url)
        for i in range(5):
            httpx.post(
                gw.url + "/api/generate", json={"model": SMALL, "prompt": f"q{i}", "stream": i % 2 == 0}, timeout=30
            )
        httpx.post(gw.url + "/api/generate", json={"model": SMALL, "prompt": "q0", "stream": False}, timeout=30)
        m = httpx.get(gw.url + "/agent/metrics", timeout=10).json()
    rows = {(r["endpoint"], r["outcome"]): r for r in m["latency"]}
    miss = rows[("/api/generate", "miss")]
    assert miss["count"] == 5 and miss["p50_ms"] >= 40 and miss["p50_ms"] <= miss["p95_ms"] <= miss["p99_ms"]
    assert rows[("/api/generate", "hit-memory")]["count"] == 1
    assert m["ttfb"]["/api/generate"]["count"] == 6
    assert m["upstream"]["tokens_per_second_p50"] > 50  # 8 tokens at 5 ms each
    assert m["upstream"]["loads_last_hour"] == 1  # the first request paid the 0.3 s load
    assert sum(b["requests"] for b in m["series"]) == 6
    assert m["timeline"][0]["reason"] == "start" and m["power"], "the sampler's readings are kept"
    assert m["cache"]["tiers"][0]["name"] == "memory"


def test_recommendations_follow_the_figures(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    with SimServer(SimOllama(token_delay_s=0.012, default_tokens=12, load_time_s=0.25)) as sim:
        gw = make_gateway(sim.url, power={"plugged": True, "percent": 90, "cpu_percent": 5, "ram_available_mb": 700})
        # slow suggestions: 12 tokens at 12 ms is ~150 ms per completion
        for i in range(22):
            httpx.post(
                gw.url + "/api/generate",
                json={"model": SMALL, "prompt": f"def f{i}(", "suffix": "\n", "stream": False},
                timeout=30,
            )
        # an explicit unload after each answer makes Ollama load the model every time
        for i in range(3):
            httpx.post(
                gw.url + "/api/generate",
                json={"model": SMALL, "prompt": f"u{i}", "keep_alive": 0, "stream": False},
                timeout=30,
            )
        # several clients at once queue up behind Ollama's single slot
        threads = [
            threading.Thread(
                target=lambda i=i: httpx.post(
                    gw.url + "/api/chat",
                    json={"model": SMALL, "messages": [{"role": "user", "content": f"c{i}"}], "stream": False},
                    timeout=60,
                )
            )
            for i in range(22)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wait_for(lambda: gw.runtime.controller.power is not None)
        recos = {r["id"]: r for r in httpx.get(gw.url + "/agent/metrics", timeout=10).json()["recommendations"]}
    assert recos["slow-suggestions"]["figure"]["value"] > 100 and "smaller" in recos["slow-suggestions"]["message"]
    assert recos["model-reloads"]["figure"]["value"] >= 3 and "keep_alive" in recos["model-reloads"]["message"]
    assert (
        recos["ram-pressure"]["figure"]["value"] == 700
        and "OLLAMA_MAX_LOADED_MODELS" in recos["ram-pressure"]["message"]
    )
    assert (
        recos["upstream-queueing"]["figure"]["value"] >= 0.2
        and "OLLAMA_NUM_PARALLEL" in recos["upstream-queueing"]["message"]
    )


def test_no_advice_when_all_is_well(gateway: Gateway) -> None:
    for _ in range(3):
        httpx.post(gateway.url + "/api/generate", json={"model": SMALL, "prompt": "x", "stream": False}, timeout=10)
    s = httpx.get(gateway.url + "/agent/status", timeout=10).json()
    assert s["recommendations"] == []
    assert json.loads(httpx.get(gateway.url + "/agent/metrics", timeout=10).text)["recommendations"] == []
