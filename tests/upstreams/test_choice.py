"""Choosing among host records: model lists, breaker states, and the live load."""

from __future__ import annotations

import pytest

from agent.errors import ModelNotFound
from agent.upstreams.breaker import HostInfo
from agent.upstreams.choice import HostRecord, choose, describe_scores
from agent.upstreams.scoring import Power

M = "qwen2.5-coder:1.5b"
OTHER = "llama3:8b"


def rec(url: str, models: dict[str, float | None] | None, loaded: set[str] | None = None, **kw: object) -> HostRecord:
    r = HostRecord(url=url, **kw)  # type: ignore[arg-type]
    r.info = HostInfo(models=models, loaded=None if loaded is None else frozenset(loaded))
    return r


def idle(url: str) -> tuple[int, int, int]:
    return (0, 0, 1)


def test_only_hosts_that_have_the_model_are_candidates() -> None:
    a = rec("http://a", {OTHER: 4000.0}, set(), order=0)
    b = rec("http://b", {M: 986.0}, {M}, order=1)
    c = rec("http://c", None, order=2)  # not listed yet: may have it
    assert choose([a, b, c], M, Power.AC, idle).urls == ["http://b", "http://c"]


def test_a_model_nobody_has_is_ollamas_404() -> None:
    a = rec("http://a", {OTHER: 4000.0}, set())
    with pytest.raises(ModelNotFound) as exc:
        choose([a], M, Power.AC, idle)
    assert exc.value.status_code == 404
    assert str(exc.value) == f'model "{M}" not found, try pulling it first'


def test_resting_hosts_are_left_alone_unless_all_rest() -> None:
    a = rec("http://a", {M: 986.0}, {M}, order=0)
    b = rec("http://b", {M: 986.0}, set(), order=1)
    a.breaker.failed("refused", hard=True, now=1000.0)
    choice = choose([a, b], M, Power.AC, idle)
    assert choice.urls == ["http://b"] and not choice.last_resort
    b.breaker.failed("refused", hard=True, now=999.0)  # b wakes first
    choice = choose([a, b], M, Power.AC, idle)
    assert choice.urls == ["http://b"] and choice.last_resort and choice.reason == "last-resort"


def test_live_load_moves_work_to_the_cold_host() -> None:
    hot = rec("http://hot", {M: 986.0}, {M}, order=0)
    cold = rec("http://cold", {M: 986.0}, set(), order=1)
    assert choose([hot, cold], M, Power.AC, idle).reason == "affinity"

    def swamped(url: str) -> tuple[int, int, int]:
        return (1, 40, 1) if url == "http://hot" else (0, 0, 1)

    choice = choose([hot, cold], M, Power.AC, swamped)
    assert choice.urls[0] == "http://cold" and choice.reason == "load"


def test_battery_routes_to_the_remote_and_status_shows_the_parts() -> None:
    laptop = rec("http://laptop", {M: 986.0}, {M}, local=True, order=0)
    desk = rec("http://desk", {M: 986.0}, set(), order=1)
    choice = choose([laptop, desk], M, Power.BATTERY, idle)
    assert choice.urls[0] == "http://desk" and choice.reason == "battery"
    rows = describe_scores([laptop, desk], M, Power.BATTERY, idle)
    assert rows[0]["parts"]["power_s"] > 0 and rows[0]["local"] is True
    assert rows[1]["parts"]["cold_s"] > 0 and rows[1]["state"]["state"] == "unknown"


def test_laptop_free_memory_counts_against_a_cold_load() -> None:
    a = rec("http://a", {M: 986.0}, set(), local=True, order=0)
    b = rec("http://b", {M: 986.0}, set(), order=1)
    assert choose([a, b], M, Power.AC, idle).urls[0] == "http://a"
    a.free_memory_mb = 300.0
    assert choose([a, b], M, Power.AC, idle).urls[0] == "http://b"


def test_an_answer_teaches_the_pool_that_the_model_is_loaded_there() -> None:
    from agent.config import UpstreamSettings
    from agent.upstreams.pool import UpstreamPool

    pool = UpstreamPool((UpstreamSettings(url="http://127.0.0.1:1"), UpstreamSettings(url="http://127.0.0.1:2")))
    for r in pool.records.values():
        r.info = HostInfo(models={M: 986.0}, loaded=frozenset())
    route = pool.route(M)
    assert route.reason == "score" and route.model == M
    route.answered(route.first)
    assert pool.records[route.first.url].info.loaded == frozenset({M})
    assert pool.route(M).reason == "affinity"  # the next request follows the model
