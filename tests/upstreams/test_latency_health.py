"""Recent speeds from duration fields, and the circuit breaker's states."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from agent.errors import UpstreamUnavailable
from agent.upstreams.breaker import (
    FAILURES_TO_REST,
    REST_MAX_S,
    Breaker,
    HostInfo,
    HostState,
    refresh,
)
from agent.upstreams.latency import EWMA_ALPHA, HostSpeed

M = "qwen2.5-coder:1.5b"


def final(load_s: float = 0.0, prompt_s: float = 0.05, n: int = 20, eval_s: float = 0.5) -> dict[str, int]:
    return {
        "load_duration": int(load_s * 1e9),
        "prompt_eval_duration": int(prompt_s * 1e9),
        "eval_count": n,
        "eval_duration": int(eval_s * 1e9),
    }


def test_speeds_come_from_the_duration_fields() -> None:
    hs = HostSpeed()
    assert hs.record_durations(M, final(prompt_s=0.1, n=40, eval_s=1.0))
    ttft, tps, load = hs.speed_for(M)
    assert ttft == pytest.approx(0.1) and tps == pytest.approx(40) and load is None
    hs.record_durations(M, final(prompt_s=0.2, n=20, eval_s=1.0))
    ttft, tps, _ = hs.speed_for(M)
    assert ttft == pytest.approx(0.1 + EWMA_ALPHA * 0.1)
    assert tps == pytest.approx(40 + EWMA_ALPHA * (20 - 40))


def test_loads_count_only_when_real_and_not_queued() -> None:
    hs = HostSpeed()
    hs.record_durations(M, final(load_s=0.01))
    assert hs.speed_for(M)[2] is None  # bookkeeping of a warm model
    hs.record_durations(M, final(load_s=3.0), queued=True)
    assert hs.speed_for(M)[2] is None  # waiting for a busy runner, not a load
    hs.record_durations(M, final(load_s=3.0))
    assert hs.speed_for(M)[2] == pytest.approx(3.0)
    assert hs.speed_for("other")[2] is None  # a load time is per model


def test_unmeasured_model_uses_the_host_average_and_junk_is_ignored() -> None:
    hs = HostSpeed()
    hs.record_durations(M, final(prompt_s=0.3))
    assert hs.speed_for("other:7b")[0] == pytest.approx(0.3)
    assert not hs.record_durations(M, {"eval_count": "x"})
    assert not hs.record_durations(M, {"model": M})
    hs.record_wall("gpt", 0.2, 10, 0.5)
    assert hs.speed_for("gpt")[1] == pytest.approx(20)
    assert hs.as_dict()["models"]["gpt"]["answers"] == 1


def test_refused_rests_at_once_soft_failures_after_n() -> None:
    b = Breaker(rest_s=2.0)
    assert b.serves() and b.state is HostState.UNKNOWN
    for _ in range(FAILURES_TO_REST - 1):
        assert not b.failed("timeout", hard=False, now=100.0)
    assert b.serves()
    assert b.failed("timeout", hard=False, now=100.0)
    assert b.state is HostState.RESTING and not b.serves() and b.rest_until == 102.0
    b.succeeded(now=103.0)
    assert b.failed("refused", hard=True, now=110.0)
    assert b.rest_until == 112.0  # a success in between: the rest starts short again


def test_rest_doubles_per_failed_probe_up_to_the_max() -> None:
    b = Breaker(rest_s=2.0)
    b.failed("refused", hard=True, now=0.0)
    rests = []
    now = 0.0
    for _ in range(12):
        now = b.rest_until
        assert b.rest_over(now)
        b.start_probe(now)
        assert b.state is HostState.PROBING and not b.serves()
        b.failed("refused", hard=False, now=now)  # any failure of a probe sends it back
        rests.append(b.rest_until - now)
    assert rests[:3] == [4.0, 8.0, 16.0]
    assert rests[-1] == REST_MAX_S
    d = b.describe(now=now)
    assert d["state"] == "resting" and d["resting_for_s"] == REST_MAX_S


class FakeProbe:
    """A host that answers or not; counts what it was asked (the breaker's contract, no network)."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    async def check(self) -> str:
        self.calls += 1
        if not self.up:
            raise UpstreamUnavailable("refused", url="http://h")
        return "0.12.6"

    async def list_models(self) -> Mapping[str, float | None]:
        return {M: 986.0}

    async def loaded_models(self) -> frozenset[str] | None:
        return frozenset({M})


def test_background_refresh_rests_and_probes() -> None:
    probe, b, info = FakeProbe(), Breaker(rest_s=10.0), HostInfo()

    async def go() -> None:
        assert await refresh(probe, b, info, now=0.0)
        assert info.models == {M: 986.0} and info.loaded == frozenset({M}) and b.state is HostState.UP
        probe.up = False
        assert not await refresh(probe, b, info, now=1.0)
        assert b.state is HostState.RESTING
        calls = probe.calls
        assert not await refresh(probe, b, info, now=5.0)  # resting: not asked
        assert probe.calls == calls
        probe.up = True
        assert await refresh(probe, b, info, now=11.0)  # rest over: probed, and up again
        assert probe.calls == calls + 1 and b.state is HostState.UP
        assert info.as_dict()["loaded"] == [M]

    asyncio.run(go())
