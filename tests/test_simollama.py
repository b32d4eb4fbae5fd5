"""The simulated Ollama behaves like Ollama where powergate depends on it."""

from __future__ import annotations

import threading
import time

import httpx
import ollama

from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"


def test_one_generation_at_a_time_per_model() -> None:
    with SimServer(SimOllama(token_delay_s=0.02, default_tokens=10)) as srv:

        def call() -> None:
            httpx.post(srv.url + "/api/generate", json={"model": SMALL, "prompt": "x", "stream": False}, timeout=30)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spans = sorted((e.started, e.finished) for e in srv.sim.inference_log())
        runs = sorted(e.finished for e in srv.sim.inference_log())
        # each took >= 0.2 s of tokens and they ran one after another
        assert runs[-1] - spans[0][0] >= 0.55


def test_load_time_keep_alive_and_runner_reload() -> None:
    with SimServer(SimOllama(load_time_s=0.2)) as srv, ollama.Client(host=srv.url) as c:
        t0 = time.monotonic()
        r = c.generate(model=SMALL, prompt="a")
        assert time.monotonic() - t0 >= 0.2 and r.load_duration and r.load_duration >= 0.2e9
        t0 = time.monotonic()
        r = c.generate(model=SMALL, prompt="b")
        assert time.monotonic() - t0 < 0.2 and not r.load_duration
        assert srv.sim.loads == 1
        c.generate(model=SMALL, prompt="c", options={"num_ctx": 8192})  # different runner options: reload
        assert srv.sim.loads == 2
        assert c.ps().models[0].context_length == 8192
        unload = c.generate(model=SMALL, prompt="", keep_alive=0)
        assert unload.done_reason == "unload" and c.ps().models == []
        load = c.generate(model=SMALL, prompt="", keep_alive="10m")
        assert load.done_reason == "load" and [m.model for m in c.ps().models] == [SMALL]


def test_queue_bound_gives_503() -> None:
    with SimServer(SimOllama(token_delay_s=0.05, default_tokens=10, max_queue=1)) as srv:
        results: list[int] = []

        def call() -> None:
            results.append(
                httpx.post(
                    srv.url + "/api/generate", json={"model": SMALL, "prompt": "x", "stream": False}, timeout=30
                ).status_code
            )

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join()
        assert 503 in results and 200 in results


def test_deterministic_only_with_temperature_zero_or_seed() -> None:
    with SimServer() as srv, ollama.Client(host=srv.url) as c:
        a = c.generate(model=SMALL, prompt="p", options={"temperature": 0}).response
        assert a == c.generate(model=SMALL, prompt="p", options={"temperature": 0}).response
        assert (
            c.generate(model=SMALL, prompt="p", options={"seed": 7}).response
            == c.generate(model=SMALL, prompt="p", options={"seed": 7}).response
        )
        outs = {c.generate(model=SMALL, prompt="p").response for _ in range(5)}
        assert len(outs) > 1
