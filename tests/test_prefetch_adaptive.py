"""Speculative prefetch through the gateway: completed-unused guesses count as wasted, a
model whose guesses are not used stops being guessed for, and status shows why."""

from __future__ import annotations

import httpx

from tests.conftest import GatewayFactory, wait_for
from tests.editor import editor_window
from tests.simollama import SimServer

FIM = {"model": "autocomplete", "suffix": "\n", "stream": False, "options": {"temperature": 0, "num_predict": 4}}


def suggest(url: str, prompt: str) -> httpx.Response:
    return httpx.post(url + "/api/generate", json=dict(FIM, prompt=prompt), timeout=10)


def test_completed_unused_prefetches_are_wasted_and_speculation_pauses(
    sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url, profile="performance")
    gate = gw.runtime.prefetcher.gate
    gate.unused_after_s = 0.0  # a guess not used by the next request counts as wasted at once
    issued = 0
    for i in range(12):
        assert suggest(gw.url, f"x{i} = ").status_code == 200
        # the user types something else each time: no guess is ever used
        wait_for(lambda n=i: gw.runtime.counters["prefetch_issued"] + gw.runtime.counters["prefetch_skipped"] > n)
        issued = gw.runtime.counters["prefetch_issued"]
        assert wait_for(lambda: not gate.open or all(g.completed_at is not None for g in gate.open.values()))
    status = httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]
    model = next(iter(status["speculation"]["models"]))
    spec = status["speculation"]["models"][model]
    assert status["prefetch"]["prefetch_wasted"] >= 4 and status["prefetch"]["prefetch_used"] == 0
    assert spec["used_share"] == 0.0 and spec["decision"] in ("paused", "probe")
    # learning (4 guesses) and one probe; the rest were skipped
    assert issued <= 5 and status["prefetch"]["prefetch_skipped"] >= 6
    guesses = [e for e in sim.sim.inference_log() if not e.body["prompt"].endswith("= ")]
    assert len(guesses) == issued


def test_a_used_guess_counts_as_used(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, profile="performance")
    first = suggest(gw.url, "def add(a, b):\n    ").json()["response"]
    assert wait_for(lambda: gw.runtime.counters["prefetch_issued"] == 1)
    assert wait_for(lambda: all(g.completed_at is not None for g in gw.runtime.prefetcher.gate.open.values()))
    r = suggest(gw.url, "def add(a, b):\n    " + first)
    assert r.headers["x-powergate-cache"] in ("hit-memory", "coalesced")
    spec = httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]["speculation"]["models"]
    assert list(spec.values())[0]["used_share"] == 1.0
    assert gw.runtime.counters["prefetch_used"] == 1 and gw.runtime.counters["prefetch_wasted"] == 0


WINDOW = 400  # an editor's prompt window: the last characters before the cursor, cut at a line start


def window(text: str) -> str:
    return editor_window(text, WINDOW)


def test_typeahead_through_the_gateway_when_the_window_moves(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, profile="battery-saver")  # no speculation: typeahead alone
    source = "".join(f"v{i} = compute({i})\n" for i in range(60)) + "result = "
    body = dict(FIM, options={"temperature": 0, "num_predict": 12})
    first = httpx.post(gw.url + "/api/generate", json=dict(body, prompt=window(source)), timeout=10).json()
    completion = first["response"]
    calls = len(sim.sim.inference_log())
    served = 0
    for k in range(1, len(completion)):
        prompt = window(source + completion[:k])
        r = httpx.post(gw.url + "/api/generate", json=dict(body, prompt=prompt), timeout=10)
        assert r.headers["x-powergate-cache"] == "typeahead", k
        assert r.json()["response"] == completion[k:]
        served += not prompt.startswith(window(source))
    assert served > 0  # the window's start moved for some of them, and typeahead still answered
    assert len(sim.sim.inference_log()) == calls
    # another suffix is another context: never served from this suggestion
    r = httpx.post(
        gw.url + "/api/generate", json=dict(body, prompt=window(source + completion[:2]), suffix="\n)"), timeout=10
    )
    assert r.headers["x-powergate-cache"] == "miss"


def test_accepting_a_suggestion_joins_its_running_prefetch_when_the_window_moved(
    make_gateway: GatewayFactory,
) -> None:
    from tests.simollama import SimOllama

    with SimServer(SimOllama(token_delay_s=0.15, one_slot=True)) as slow:
        gw = make_gateway(slow.url, profile="performance")
        source = "".join(f"v{i} = compute({i})\n" for i in range(60)) + "result = "
        body = dict(FIM, options={"temperature": 0, "num_predict": 4})
        completion = httpx.post(gw.url + "/api/generate", json=dict(body, prompt=window(source)), timeout=30).json()[
            "response"
        ]
        assert wait_for(lambda: gw.runtime.counters["prefetch_issued"] == 1, timeout=10)
        accepted = window(source + completion)
        assert accepted != window(source) + completion  # the editor's window dropped lines at the top
        assert wait_for(lambda: len(slow.sim.inference_log()) == 2, timeout=10)  # the guess is running
        calls = len(slow.sim.inference_log())
        r = httpx.post(gw.url + "/api/generate", json=dict(body, prompt=accepted), timeout=30)
        assert r.status_code == 200 and r.headers["x-powergate-cache"] in ("coalesced", "typeahead")
        assert len(slow.sim.inference_log()) == calls  # no new generation: the prefetch answered
        assert gw.runtime.counters["prefetch_used"] == 1
        guess = [e for e in slow.sim.inference_log() if e.body["prompt"] == window(source) + completion]
        assert (
            guess
            and r.json()["response"]
            == httpx.post(slow.url + "/api/generate", json=dict(guess[0].body, stream=False), timeout=30).json()[
                "response"
            ]
        )
