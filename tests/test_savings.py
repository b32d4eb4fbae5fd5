"""The `savings` figures: what powergate did for the user, checked against what the
simulated Ollama reports for the answers a hit, a typeahead or a coalesced call replaced."""

from __future__ import annotations

import datetime as dt
import json
import threading

import httpx
import pytest

from agent.cli import fmt_savings
from agent.savings import KEYS, Savings, entry_model_seconds, typeahead_share
from tests.conftest import GatewayFactory, run_cli
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"
WATTS = 40.0


def test_figures_follow_real_traffic(make_gateway: GatewayFactory) -> None:
    with SimServer(SimOllama(token_delay_s=0.02, default_tokens=10)) as sim:
        gw = make_gateway(sim.url, config=f"[savings]\nmodel_watts = {WATTS}\n")
        body = {"model": SMALL, "prompt": "def add(a, b):", "stream": False, "options": {"temperature": 0}}
        first = httpx.post(gw.url + "/api/generate", json=body, timeout=30)
        assert first.headers["x-powergate-cache"] == "miss"
        model_s = first.json()["total_duration"] / 1e9
        hit = httpx.post(gw.url + "/api/generate", json=body, timeout=30)
        assert hit.headers["x-powergate-cache"] == "hit-memory"
        # six identical requests at once: one upstream call, five followers
        other = dict(body, prompt="class Stack:")
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: results.append(httpx.post(gw.url + "/api/generate", json=other, timeout=30)))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = sorted(r.headers["x-powergate-cache"] for r in results)
        assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 5, outcomes
        flight_s = next(r for r in results if r.headers["x-powergate-cache"] == "miss").json()["total_duration"] / 1e9
        # a bad request is not a request served
        assert httpx.post(gw.url + "/api/generate", json={"prompt": "x"}, timeout=30).status_code >= 400

        status = httpx.get(gw.url + "/agent/status", timeout=10).json()
        sv = status["savings"]
        assert set(KEYS) <= set(sv)
        assert sv["requests"] == 8
        assert sv["served_without_model"] == 1  # the hit; coalesced answers came from a model run
        assert sv["upstream_calls_avoided"] == 6  # the hit and five followers
        expected_s = model_s + 5 * flight_s
        assert sv["model_time_saved_s"] == pytest.approx(expected_s, abs=0.002)
        assert sv["energy_saved_wh"] == pytest.approx(expected_s * WATTS / 3600, abs=1e-4)
        assert sv["model_watts"] == WATTS and sv["energy_is_estimate"] is True
        assert sv["today"]["requests"] == 8 and sv["today"]["model_time_saved_s"] == sv["model_time_saved_s"]
        # the same object in /agent/metrics and Prometheus
        metrics = httpx.get(gw.url + "/agent/metrics", timeout=10).json()["savings"]
        assert {k: metrics[k] for k in KEYS} == {k: sv[k] for k in KEYS}
        prom = httpx.get(gw.url + "/metrics", timeout=10).text
        assert "powergate_savings_requests_total 8.0" in prom
        assert "powergate_savings_upstream_calls_avoided_total 6.0" in prom
        assert "powergate_savings_model_time_saved_s_total" in prom
        # and in `powergate status`
        r = run_cli("status", "--port", str(gw.server.settings.server.port))
        assert r.returncode == 0, r.stderr
        assert "saved since start: 8 requests, 12% answered without the model" in r.stdout
        assert "6 upstream calls avoided" in r.stdout and f"estimate at {WATTS:g} W" in r.stdout


def test_typeahead_saves_the_share_it_served(make_gateway: GatewayFactory, sim: SimServer) -> None:
    gw = make_gateway(sim.url)
    body = {"model": SMALL, "prompt": "import os\n", "suffix": "\n", "stream": False, "options": {"temperature": 0}}
    first = httpx.post(gw.url + "/api/generate", json=body, timeout=30).json()
    text = first["response"]
    r = httpx.post(gw.url + "/api/generate", json=dict(body, prompt="import os\n" + text[:4]), timeout=30)
    assert r.headers["x-powergate-cache"] == "typeahead"
    sv = httpx.get(gw.url + "/agent/status", timeout=10).json()["savings"]
    share = (len(text) - 4) / len(text)
    assert sv["served_without_model"] == 1
    assert sv["model_time_saved_s"] == pytest.approx(first["total_duration"] / 1e9 * share, abs=0.002)


def test_today_starts_again_at_midnight() -> None:
    day = [dt.date(2026, 12, 5)]
    s = Savings(30.0, today=lambda: day[0])
    s.answered("hit-memory", 200)
    s.model_time(1.5)
    s.answered("miss", 500)  # not served
    before = s.describe(scheduler_avoided=3)
    assert before["requests"] == 1 and before["upstream_calls_avoided"] == 4 and before["today"]["requests"] == 1
    day[0] = dt.date(2026, 12, 6)
    s.answered("miss", 200)
    after = s.describe(scheduler_avoided=5)
    assert after["requests"] == 2 and after["upstream_calls_avoided"] == 6
    assert after["today"] == {
        "requests": 1,
        "served_without_model": 0,
        "model_time_saved_s": 0.0,
        "upstream_calls_avoided": 2,  # two dropped or superseded since midnight
        "energy_saved_wh": 0.0,
    }
    assert after["energy_saved_wh"] == pytest.approx(1.5 * 30 / 3600, abs=1e-4)


def test_model_time_of_a_stored_answer() -> None:
    final = json.dumps({"done": True, "total_duration": 2_500_000_000}).encode()
    assert entry_model_seconds([b"{}", final], {"model_s": 9.0}) == 2.5  # Ollama's own measure first
    sse = json.dumps({"choices": [{"text": "x"}]}).encode()
    assert entry_model_seconds([sse], {"model_s": 0.75}) == 0.75  # no duration field: the upstream wall time
    assert entry_model_seconds([sse], {}) == 0.0
    assert typeahead_share("abc", "abcdef") == 0.5 and typeahead_share("x", "") == 0.0
    line = fmt_savings("today", {"requests": 0, "served_without_model": 0, "model_time_saved_s": 0.0,
                                 "upstream_calls_avoided": 0, "energy_saved_wh": 0.0}, 30)
    assert line.startswith("saved today: 0 requests, - answered")
