"""The scheduler on its own, then through the gateway against a one-slot Ollama."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import agent.upstreams.scheduling as sched
from agent.errors import UpstreamBusy
from agent.upstreams.scheduling import AUTOCOMPLETE, BULK, CHAT, PREFETCH, Scheduler, Superseded
from tests.conftest import Gateway, GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL, MEDIUM = "qwen2.5-coder:1.5b", "qwen2.5-coder:7b"


async def _order(s: Scheduler, jobs: list[tuple[str, int, str, str]]) -> list[str]:
    done: list[str] = []

    async def job(name: str, prio: int, client: str, prefix: str) -> None:
        try:
            async with s.slot(prio, client, prefix):
                done.append(name)
                await asyncio.sleep(0)
        except Superseded:
            done.append(f"{name}:superseded")

    async with s.slot(CHAT):  # the slot is busy while the others queue up
        tasks = []
        for j in jobs:
            tasks.append(asyncio.ensure_future(job(*j)))
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return done


async def test_priorities_and_newest_autocomplete_first() -> None:
    got = await _order(
        Scheduler(1),
        [
            ("prefetch", PREFETCH, "", ""),
            ("bulk", BULK, "", ""),
            ("chat", CHAT, "", ""),
            ("ac-old", AUTOCOMPLETE, "a", "x"),
            ("ac-new", AUTOCOMPLETE, "b", "y"),
        ],
    )
    assert got == ["ac-new", "ac-old", "chat", "bulk", "prefetch"]


async def test_an_extended_prompt_supersedes_the_older_one() -> None:
    s = Scheduler(1)
    got = await _order(
        s,
        [
            ("def f", AUTOCOMPLETE, "me", "def f"),
            ("other-client", AUTOCOMPLETE, "you", "def f"),
            ("unrelated", AUTOCOMPLETE, "me", "class A"),
            ("def foo", AUTOCOMPLETE, "me", "def foo"),
        ],
    )
    assert "def f:superseded" in got and "other-client" in got and "unrelated" in got
    assert got.index("def foo") < got.index("unrelated")
    assert s.stats.superseded == 1


async def test_waiting_client_that_leaves_never_runs() -> None:
    s = Scheduler(1)
    ran: list[str] = []

    async def job() -> None:
        async with s.slot(AUTOCOMPLETE):
            ran.append("ran")

    async with s.slot(CHAT):
        t = asyncio.ensure_future(job())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    assert ran == [] and s.stats.dropped_before_upstream == 1 and s.idle


async def test_ageing_prevents_starvation() -> None:
    s = Scheduler(1)
    order: list[str] = []

    async def job(name: str, prio: int) -> None:
        async with s.slot(prio):
            order.append(name)

    async with s.slot(CHAT):
        old = asyncio.ensure_future(job("old-bulk", BULK))
        await asyncio.sleep(0)
        s.waiting[0].enqueued -= 3 * sched.AGE_STEP_S  # it has waited 15 s
        new = asyncio.ensure_future(job("new-chat", CHAT))
        await asyncio.sleep(0)
    await asyncio.gather(old, new)
    assert order == ["old-bulk", "new-chat"]


async def test_bounded_queue_says_busy() -> None:
    s = Scheduler(1, max_queue=2)

    async def job() -> None:
        async with s.slot(BULK):
            await asyncio.sleep(0.01)

    async with s.slot(CHAT):
        tasks = [asyncio.ensure_future(job()) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(UpstreamBusy) as e:
            async with s.slot(BULK):
                pass
        assert e.value.retry_after > 0
    await asyncio.gather(*tasks)


async def test_foreground_work_preempts_a_running_prefetch() -> None:
    s = Scheduler(1)
    started = asyncio.Event()

    async def prefetch() -> None:
        async with s.slot(PREFETCH):
            started.set()
            await asyncio.sleep(10)

    p = asyncio.ensure_future(prefetch())
    await started.wait()
    async with s.slot(CHAT):
        pass
    with pytest.raises(asyncio.CancelledError):
        await p
    assert s.stats.preempted_prefetch == 1


# ---------------------------------------------------------------- through the gateway


@pytest.fixture
def busy_sim() -> Any:
    srv = SimServer(SimOllama(token_delay_s=0.02, default_tokens=25, one_slot=True)).start()
    yield srv
    srv.stop()


def background(url: str, path: str, body: dict[str, Any], results: list[Any], timeout: float = 30) -> threading.Thread:
    def run() -> None:
        try:
            results.append(httpx.post(url + path, json=body, timeout=timeout))
        except httpx.HTTPError as exc:
            results.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t


def queued(gw: Gateway) -> int:
    """Requests waiting in the (one) upstream's queue."""
    return len(gw.runtime.upstreams.primary.scheduler.waiting)


def occupy(gw: Gateway, sim: SimServer, results: list[Any], tokens: int | None = None) -> threading.Thread:
    """A long chat answer that holds Ollama's one slot; returns once Ollama runs it.
    `tokens`: hold it longer (0.02 s each) when the test must act while it runs."""
    chat: dict[str, Any] = {"model": SMALL, "messages": [{"role": "user", "content": "long"}], "stream": False}
    if tokens is not None:
        chat["options"] = {"num_predict": tokens}
    t = background(gw.url, "/api/chat", chat, results)
    assert wait_for(lambda: bool(sim.sim.inference_log()), timeout=5)
    return t


def test_autocomplete_overtakes_queued_chat_and_embeddings(busy_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(busy_sim.url, profile="battery-saver")  # no prefetch noise
    res: list[Any] = []
    threads = [occupy(gw, busy_sim, res)]
    for i in range(2):
        threads.append(
            background(
                gw.url,
                "/api/chat",
                {"model": SMALL, "messages": [{"role": "user", "content": f"q{i}"}], "stream": False},
                res,
            )
        )
    threads.append(background(gw.url, "/api/embed", {"model": "embed", "input": [f"e{i}" for i in range(40)]}, res))
    time.sleep(0.2)
    r = httpx.post(
        gw.url + "/api/generate", json={"model": SMALL, "prompt": "def f(", "suffix": "\n", "stream": False}, timeout=30
    )
    for t in threads:
        t.join()
    assert r.status_code == 200
    order = [e.body.get("prompt") or e.path for e in busy_sim.sim.inference_log()]
    assert order.index("def f(") == 1, order  # right after the chat that was already running, before the queue


def test_client_that_left_while_queued_never_reaches_ollama(busy_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(busy_sim.url, profile="battery-saver")
    res: list[Any] = []
    t = occupy(gw, busy_sim, res)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gw.url + "/api/generate",
            json={"model": SMALL, "prompt": "stale keystroke", "suffix": "\n", "stream": False},
            timeout=0.15,
        )
    t.join()
    time.sleep(0.2)
    assert all(e.body.get("prompt") != "stale keystroke" for e in busy_sim.sim.log)
    status = httpx.get(gw.url + "/agent/status", timeout=5).json()
    assert status["scheduling"]["dropped_before_upstream"] == 1


def test_superseded_completion_is_answered_from_the_newer_one(
    busy_sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(busy_sim.url, profile="battery-saver")
    res: list[Any] = []
    running = occupy(gw, busy_sim, res, tokens=250)  # 5 s: the newer one arrives while it runs
    older: list[Any] = []
    t_old = background(
        gw.url, "/api/generate", {"model": SMALL, "prompt": "def fo", "suffix": "\n", "stream": False}, older
    )
    assert wait_for(lambda: queued(gw) == 1)  # the older one waits behind the chat
    newer = httpx.post(
        gw.url + "/api/generate",
        json={"model": SMALL, "prompt": "def foo(", "suffix": "\n", "stream": False},
        timeout=30,
    )
    t_old.join()
    running.join()
    assert newer.status_code == 200
    # never refused: the text typed in between + the newer completion, without Ollama
    assert older[0].status_code == 200, older[0].text
    assert older[0].json()["response"] == "o(" + newer.json()["response"]
    assert older[0].headers["x-powergate-cache"] == "typeahead"
    assert older[0].json()["eval_count"] >= newer.json()["eval_count"]  # it served more text
    assert all(e.body.get("prompt") != "def fo" for e in busy_sim.sim.log)


def test_superseded_completion_across_a_moved_window_is_answered_from_the_newer_one(
    busy_sim: SimServer, make_gateway: GatewayFactory
) -> None:
    """The editor's window dropped its top line while the user typed on: still the same
    position, so the older waiting suggestion is answered from the newer one."""
    gw = make_gateway(busy_sim.url, profile="battery-saver")
    res: list[Any] = []
    running = occupy(gw, busy_sim, res, tokens=250)  # 5 s: the newer one arrives while it runs
    body = "".join(f"    total_{i} = compute(values[{i}], scale=2)\n" for i in range(6))
    old_prompt = "import math\n" + body + "    ret"
    new_prompt = body + "    return tot"  # line 1 dropped from the top, "urn tot" typed
    older: list[Any] = []
    t_old = background(
        gw.url, "/api/generate", {"model": SMALL, "prompt": old_prompt, "suffix": "\n", "stream": False}, older
    )
    assert wait_for(lambda: queued(gw) == 1)
    newer = httpx.post(
        gw.url + "/api/generate",
        json={"model": SMALL, "prompt": new_prompt, "suffix": "\n", "stream": False},
        timeout=30,
    )
    t_old.join()
    running.join()
    assert newer.status_code == 200
    assert older[0].status_code == 200, older[0].text
    assert older[0].json()["response"] == "urn tot" + newer.json()["response"]
    assert older[0].headers["x-powergate-cache"] == "typeahead"
    assert all(e.body.get("prompt") != old_prompt for e in busy_sim.sim.log)


def test_batch_of_extending_prompts_is_all_answered(busy_sim: SimServer, make_gateway: GatewayFactory) -> None:
    """A batch client sends completions whose prompts extend one another, all at once."""
    gw = make_gateway(busy_sim.url, profile="battery-saver")
    res: list[Any] = []
    running = occupy(gw, busy_sim, res)
    got: list[Any] = []
    prompts = ["import o", "import os", "import os\n", "import os\nimport s"]
    threads = []
    for p in prompts:
        body = {"model": SMALL, "prompt": p, "suffix": "\n", "stream": False, "options": {"temperature": 0}}
        threads.append(background(gw.url, "/api/generate", body, got))
        time.sleep(0.05)
    for t in threads:
        t.join()
    running.join()
    assert sorted(r.status_code for r in got) == [200, 200, 200, 200]  # directly: all 200 too
    by_prompt = {r.request.content: r.json()["response"] for r in got}
    assert len(by_prompt) == 4


def test_superseded_completion_runs_when_the_newer_one_is_aborted(
    busy_sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(busy_sim.url, profile="battery-saver")
    res: list[Any] = []
    running = occupy(gw, busy_sim, res)
    older: list[Any] = []
    t_old = background(
        gw.url, "/api/generate", {"model": SMALL, "prompt": "def ba", "suffix": "\n", "stream": False}, older
    )
    assert wait_for(lambda: queued(gw) == 1)  # the older one waits behind the chat
    with pytest.raises(httpx.ReadTimeout):  # the editor aborts the newer one
        httpx.post(
            gw.url + "/api/generate",
            json={"model": SMALL, "prompt": "def bar", "suffix": "\n", "stream": False},
            timeout=0.15,
        )
    t_old.join()
    running.join()
    assert older[0].status_code == 200 and older[0].headers["x-powergate-cache"] == "miss"
    assert any(e.body.get("prompt") == "def ba" for e in busy_sim.sim.inference_log())


def test_queue_over_its_bound_gets_503_with_retry_after(busy_sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(None, profile="battery-saver", config=f'[[upstream]]\nurl = "{busy_sim.url}"\nmax_queue = 1\n')
    res: list[Any] = []
    threads = [
        background(
            gw.url,
            "/api/chat",
            {"model": SMALL, "messages": [{"role": "user", "content": f"c{i}"}], "stream": False},
            res,
        )
        for i in range(4)
    ]
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in res)
    assert 503 in statuses and 200 in statuses
    busy = next(r for r in res if r.status_code == 503)
    assert busy.headers["retry-after"] and "full" in busy.json()["error"]


def test_speculative_prefetch_makes_the_accepted_suggestion_instant(
    sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url, profile="performance")
    body = {
        "model": "autocomplete",
        "prompt": "def add(a, b):\n    ",
        "suffix": "\n",
        "stream": False,
        "options": {"temperature": 0},
    }
    first = httpx.post(gw.url + "/api/generate", json=body, timeout=10).json()["response"]
    accepted = dict(body, prompt=body["prompt"] + first)
    assert wait_for(lambda: any(e.body.get("prompt") == accepted["prompt"] for e in sim.sim.inference_log()), timeout=5)
    assert wait_for(lambda: gw.runtime.cache.lookup_memory is not None and gw.runtime.counters["prefetch_issued"] == 1)
    time.sleep(0.2)
    r = httpx.post(gw.url + "/api/generate", json=accepted, timeout=10)
    assert r.headers["x-powergate-cache"] in ("hit-memory", "coalesced")
    counters = httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]["prefetch"]
    assert counters["prefetch_used"] == 1 and counters["prefetch_issued"] >= 1


def test_prefetch_is_off_on_battery_saver(sim: SimServer, make_gateway: GatewayFactory) -> None:
    gw = make_gateway(sim.url, profile="battery-saver")
    httpx.post(
        gw.url + "/api/generate",
        json={"model": "autocomplete", "prompt": "x = ", "suffix": "\n", "stream": False},
        timeout=10,
    )
    time.sleep(0.3)
    assert len(sim.sim.inference_log(include_loads=True)) == 1
    assert gw.runtime.counters["prefetch_issued"] == 0 and gw.runtime.counters["warmups"] == 0


def test_warm_up_loads_the_autocomplete_model_when_the_editor_wakes(
    sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(sim.url, profile="balanced")
    httpx.post(
        gw.url + "/api/chat",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": False},
        timeout=10,
    )
    assert wait_for(lambda: gw.runtime.counters["warmups"] == 1, timeout=5)
    warm = [e for e in sim.sim.log if e.path == "/api/generate" and e.body.get("prompt") == ""]
    assert warm and warm[0].body["model"] == SMALL and warm[0].body["keep_alive"] == "10m"
    assert SMALL in sim.sim.loaded


def test_running_prefetch_is_cancelled_for_foreground_work(make_gateway: GatewayFactory) -> None:
    # 0.2 s a token: the 4-token prefetch still runs when the chat arrives on a busy CI machine
    with SimServer(SimOllama(token_delay_s=0.2, default_tokens=30, one_slot=True)) as slow:
        gw = make_gateway(slow.url, profile="performance")
        body = {
            "model": "autocomplete",
            "prompt": "import os\n",
            "suffix": "\n",
            "stream": False,
            # long enough (20 tokens x 50 ms) that the chat below surely arrives while the
            # prefetch runs, however slow a shared CI machine starts an HTTP request
            "options": {"num_predict": 20},
        }
        httpx.post(gw.url + "/api/generate", json=body, timeout=30)
        assert wait_for(lambda: gw.runtime.counters["prefetch_issued"] == 1, timeout=5)
        time.sleep(0.1)  # the prefetch is running now
        r = httpx.post(
            gw.url + "/api/chat",
            json={"model": "chat", "messages": [{"role": "user", "content": "q"}], "stream": False},
            timeout=30,
        )
        assert r.status_code == 200
        assert wait_for(lambda: gw.runtime.counters["prefetch_wasted"] == 1, timeout=5)
        prefetched = [
            e
            for e in slow.sim.log
            if e.path == "/api/generate"
            and e.body.get("prompt", "").startswith("import os\n")
            and e.body["prompt"] != "import os\n"
        ]
        # Ollama notices the closed connection a moment after powergate closed it
        assert prefetched and wait_for(lambda: prefetched[0].cancelled, timeout=5)
        fams = {f.name: f for f in text_string_to_metric_families(httpx.get(gw.url + "/metrics", timeout=5).text)}
        assert fams["powergate_prefetch_wasted"].samples[0].value == 1.0
