"""The routing score: pure functions, so every rule is checked without a server."""

from __future__ import annotations

import math

from agent.upstreams.scoring import (
    BATTERY_LOCAL_PENALTY_S,
    COLD_LOAD_S,
    DEFAULT_TOKENS_PER_S,
    DEFAULT_TTFT_S,
    LOW_MEMORY_PENALTY_S,
    TYPICAL_ANSWER_TOKENS,
    UNKNOWN_LOADED_S,
    HostFacts,
    Power,
    model_matches,
    rank,
    reason,
    score_host,
)

M = "qwen2.5-coder:1.5b"
JOB = DEFAULT_TTFT_S + TYPICAL_ANSWER_TOKENS / DEFAULT_TOKENS_PER_S


def host(url: str, **kw: object) -> HostFacts:
    return HostFacts(url=url, loaded=frozenset(), **kw)  # type: ignore[arg-type]


def test_parts_add_up_to_the_documented_formula() -> None:
    f = HostFacts("http://a", weight=2, slots=1, in_flight=1, queued=1, loaded=frozenset(), ttft_s=0.1, tokens_per_s=40)
    s = score_host(f, M, Power.AC)
    job = 0.1 + TYPICAL_ANSWER_TOKENS / 40
    assert s.cold_s == COLD_LOAD_S and s.loaded is False
    assert math.isclose(s.queue_s, 2 * job)  # one running + one queued, one slot
    assert math.isclose(s.total, (COLD_LOAD_S + 2 * job + job) / 2)
    assert s.as_dict()["parts"]["weight"] == 2


def test_affinity_beats_an_idle_cold_host() -> None:
    hot = HostFacts("http://hot", loaded=frozenset({M}), in_flight=1, order=1)
    cold = host("http://cold", order=0)
    ranking = rank([cold, hot], M, Power.AC)
    assert [s.url for s in ranking] == ["http://hot", "http://cold"]
    assert reason(ranking, Power.AC) == "affinity"


def test_load_spreads_when_the_hot_host_is_busy() -> None:
    # enough work queued on the hot host to outweigh a cold load elsewhere
    ahead = int(COLD_LOAD_S / JOB) + 2
    hot = HostFacts("http://hot", loaded=frozenset({M}), in_flight=1, queued=ahead)
    cold = host("http://cold")
    ranking = rank([hot, cold], M, Power.AC)
    assert ranking[0].url == "http://cold"
    assert reason(ranking, Power.AC) == "load"


def test_free_slots_mean_no_queue() -> None:
    f = HostFacts("http://a", slots=4, in_flight=3, loaded=frozenset({M}))
    assert score_host(f, M, Power.AC).queue_s == 0.0
    f2 = HostFacts("http://a", slots=4, in_flight=4, queued=3, loaded=frozenset({M}))
    assert math.isclose(score_host(f2, M, Power.AC).queue_s, 4 * JOB / 4)


def test_measured_speed_and_weight_decide_between_warm_hosts() -> None:
    slow = HostFacts("http://slow", loaded=frozenset({M}), ttft_s=0.4, tokens_per_s=10, order=0)
    fast = HostFacts("http://fast", loaded=frozenset({M}), ttft_s=0.05, tokens_per_s=80, order=1)
    assert rank([slow, fast], M, Power.AC)[0].url == "http://fast"
    heavy = HostFacts("http://slow", loaded=frozenset({M}), ttft_s=0.4, tokens_per_s=10, weight=100)
    assert rank([heavy, fast], M, Power.AC)[0].url == "http://slow"


def test_ties_go_to_weight_then_config_order() -> None:
    a = host("http://a", order=0)
    b = host("http://b", order=1)
    assert rank([b, a], M, Power.AC)[0].url == "http://a"
    c = host("http://c", order=2, weight=1)
    assert rank([c, a], M, Power.AC)[0].url == "http://a"


def test_unknown_loaded_state_counts_half_a_load() -> None:
    s = score_host(HostFacts("http://a"), M, Power.AC)
    assert s.cold_s == UNKNOWN_LOADED_S and s.loaded is None


def test_measured_load_time_replaces_the_default() -> None:
    s = score_host(host("http://a", load_s=1.5), M, Power.AC)
    assert s.cold_s == 1.5


def test_short_memory_penalises_a_cold_load_only() -> None:
    short = host("http://a", free_memory_mb=500, model_size_mb=986)
    assert score_host(short, M, Power.AC).memory_s == LOW_MEMORY_PENALTY_S
    warm = HostFacts("http://a", loaded=frozenset({M}), free_memory_mb=500, model_size_mb=986)
    assert score_host(warm, M, Power.AC).memory_s == 0.0
    roomy = host("http://a", free_memory_mb=8000, model_size_mb=986)
    assert score_host(roomy, M, Power.AC).memory_s == 0.0


def test_battery_prefers_a_remote_host_even_cold() -> None:
    laptop = HostFacts("http://laptop", local=True, loaded=frozenset({M}))
    remote = host("http://desk")
    assert rank([laptop, remote], M, Power.AC)[0].url == "http://laptop"
    ranking = rank([laptop, remote], M, Power.BATTERY)
    assert ranking[0].url == "http://desk"
    assert reason(ranking, Power.BATTERY) == "battery"
    assert score_host(laptop, M, Power.BATTERY).power_s == BATTERY_LOCAL_PENALTY_S


def test_battery_still_uses_the_laptop_when_the_remote_is_hopelessly_behind() -> None:
    laptop = HostFacts("http://laptop", local=True, loaded=frozenset({M}))
    swamped = HostFacts("http://desk", loaded=frozenset({M}), in_flight=1, queued=100)
    assert rank([laptop, swamped], M, Power.BATTERY)[0].url == "http://laptop"


def test_battery_saver_uses_the_laptop_only_as_last_resort() -> None:
    laptop = HostFacts("http://laptop", local=True, loaded=frozenset({M}))
    swamped = HostFacts("http://desk", loaded=frozenset({M}), in_flight=1, queued=100)
    ranking = rank([laptop, swamped], M, Power.SAVER)
    assert [s.url for s in ranking] == ["http://desk", "http://laptop"]
    assert ranking[1].as_dict()["score"] is None  # infinite: shown as null
    only_local = rank([laptop, HostFacts("http://other-laptop", local=True)], M, Power.SAVER)
    assert only_local[0].url == "http://laptop"  # among local hosts, the normal score decides


def test_power_of_snapshot() -> None:
    assert Power.of(True, False) is Power.AC
    assert Power.of(None, False) is Power.AC
    assert Power.of(False, False) is Power.BATTERY
    assert Power.of(True, True) is Power.SAVER


def test_model_names_match_like_ollama() -> None:
    assert model_matches("llama3", ["llama3:latest"])
    assert model_matches("llama3:latest", ["llama3"])
    assert not model_matches("llama3", ["llama3:8b"])
    assert reason([], Power.AC) == "none"
    assert reason([score_host(host("http://a"), M, Power.AC)], Power.AC) == "only"
