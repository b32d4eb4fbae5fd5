"""Several real (simulated) Ollama hosts behind one real gateway: which host serves, and
what happens when one dies, comes back, is busy, or the laptop runs on battery.

"Remote" hosts are loopback servers with `local = false` (nothing here may leave the
machine); the laptop's own server is a loopback URL left to the default (`local`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama
from tests.simollama.app import DEFAULT_MODELS, SimModel
from tests.upstreams.hosts import MEDIUM, SMALL, Host, busy_sim, fast_sim, hosts, slow_sim

H_UP = "x-powergate-upstream"
pytestmark = pytest.mark.slow


def setup(
    tmp_path: Path,
    make_gateway: GatewayFactory,
    ups: list[tuple[Host, dict[str, Any]]],
    *,
    plugged: bool = True,
    interval_s: float = 0.2,
) -> tuple[Any, Path]:
    power = tmp_path / "power.json"
    power.write_text(json.dumps({"plugged": plugged, "percent": 90, "cpu_percent": 5, "ram_available_mb": 8000}))
    lines = []
    for host, opts in ups:
        lines += ["[[upstream]]", f'url = "{host.url}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    lines += ["[power]", f'source = "file:{power.as_posix()}"', f"interval_s = {interval_s}"]
    # balanced: the runner options the hosts' preloaded models were loaded with
    return make_gateway(None, config="\n".join(lines) + "\n", profile="balanced"), power


def suggest(client: httpx.Client, i: int, model: str = SMALL, **kw: Any) -> httpx.Response:
    body = {"model": model, "prompt": f"def f{i}_{time.time_ns()}(x):", "suffix": "\n", "stream": False}
    body.update(kw)
    return client.post("/api/generate", json=body)


def status(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/agent/status").json())


def host_doc(client: httpx.Client, url: str) -> dict[str, Any]:
    return next(u for u in status(client)["upstreams"] if u["url"] == url)


def test_affinity_wins_over_an_idle_cold_host(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    # the cold host is faster and listed first: only the loaded model speaks for the hot one
    with hosts(("cold", fast_sim(), ()), ("hot", slow_sim(), (SMALL,))) as (cold, hot):
        gw, _ = setup(tmp_path, make_gateway, [(cold, {"local": False}), (hot, {"local": False})])
        with gw.client() as c:
            served = Counter(suggest(c, i).headers[H_UP] for i in range(4))
            assert served == Counter({hot.url: 4})
            assert cold.asked() == 0 and hot.served(SMALL) == 4
            doc = status(c)
            assert set(doc["routing"]["hosts"]["decisions"]) == {"affinity"}  # requests and the warm-up
            row = host_doc(c, hot.url)["routing"]
            assert row["model_loaded"] is True and row["parts"]["cold_s"] == 0
            assert host_doc(c, cold.url)["routing"]["parts"]["cold_s"] > 0


def test_load_spreads_when_the_hot_host_is_busy(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    slow = SimOllama(DEFAULT_MODELS, token_delay_s=0.05)  # about 0.6 s an answer, one at a time
    with hosts(("hot", slow, (SMALL,)), ("cold", fast_sim(), ())) as (hot, cold):
        gw, _ = setup(tmp_path, make_gateway, [(hot, {"local": False}), (cold, {"local": False})])
        results: list[httpx.Response] = []

        def one(i: int) -> None:
            with gw.client() as c:
                results.append(c.post("/api/chat", json=chat_body(i)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200] * 12
        by = Counter(r.headers[H_UP] for r in results)
        assert by[hot.url] >= 1 and by[cold.url] >= 1, by
        with gw.client() as c:
            assert status(c)["routing"]["hosts"]["decisions"].get("load", 0) >= 1


def chat_body(i: int, model: str = SMALL, n: int = 12) -> dict[str, Any]:
    return {
        "model": model,
        "stream": False,
        "options": {"num_predict": n},
        "messages": [{"role": "user", "content": f"question {i} {time.time_ns()}"}],
    }


def test_no_request_fails_while_a_host_is_killed_under_load(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    a_sim = SimOllama(DEFAULT_MODELS, token_delay_s=0.01)
    b_sim = SimOllama(DEFAULT_MODELS, token_delay_s=0.01)
    with hosts(("a", a_sim, (SMALL,)), ("b", b_sim, (SMALL,))) as (a, b):
        gw, _ = setup(tmp_path, make_gateway, [(a, {"local": False}), (b, {"local": False})])
        results: list[httpx.Response] = []
        errors: list[Exception] = []
        killed = threading.Event()

        def worker(w: int) -> None:
            with gw.client() as c:
                for i in range(8):
                    try:
                        results.append(c.post("/api/chat", json=chat_body(w * 100 + i)))
                    except httpx.HTTPError as exc:
                        errors.append(exc)
                    if w == 0 and i == 2:
                        a.kill()  # in the middle of the load: its running answers are cut
                        killed.set()

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert killed.is_set() and not errors
        assert [r.status_code for r in results if r.status_code != 200] == []
        assert len(results) == 48
        with gw.client() as c:
            assert host_doc(c, a.url)["routing"]["state"]["state"] in ("resting", "probing")
            assert status(c)["routing"]["hosts"]["retries"] >= 1  # answers cut by the kill were retried on b


def test_a_dead_host_is_not_asked_again_until_its_rest_is_over(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    # only host a has the 14b model: once it is up again, a request for it shows a serves again
    big = SimModel("qwen2.5-coder:14b", parameter_size="14.8B", size=8_988_000_000)
    a_sim = SimOllama((*DEFAULT_MODELS[:1], big))
    b_sim = SimOllama(DEFAULT_MODELS[:1])
    with hosts(("a", a_sim, (SMALL,)), ("b", b_sim, ())) as (a, b):
        gw, _ = setup(tmp_path, make_gateway, [(a, {"local": False}), (b, {"local": False})], interval_s=1.0)
        with gw.client() as c:
            assert suggest(c, 0).headers[H_UP] == a.url
            a.kill()
            r = suggest(c, 1)
            assert r.status_code == 200 and r.headers[H_UP] == b.url  # refused: retried on b
            a.revive()  # back at once, but it rests: nobody asks it before the rest is over
            asked_before = a.asked()
            during_rest = 0
            for i in range(2, 8):
                r = suggest(c, i)
                state = host_doc(c, a.url)["routing"]["state"]
                if state["state"] != "resting":
                    break
                assert r.status_code == 200 and r.headers[H_UP] == b.url
                during_rest += 1
            assert during_rest >= 1
            assert a.asked() == asked_before
            # the background check probes it when the rest is over, and it serves again
            assert wait_for(lambda: host_doc(c, a.url)["routing"]["state"]["state"] == "up", timeout=15)
            r = c.post("/api/generate", json={"model": big.name, "prompt": "x", "stream": False})
            assert r.status_code == 200 and r.headers[H_UP] == a.url


def test_a_busy_host_503_is_retried_on_the_next_host(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    with hosts(("busy", busy_sim(), (SMALL,)), ("spare", fast_sim(), ())) as (busy, spare):
        gw, _ = setup(tmp_path, make_gateway, [(busy, {"local": False}), (spare, {"local": False})])
        with gw.client() as c:
            r = suggest(c, 0)
            assert r.status_code == 200 and r.headers[H_UP] == spare.url
            assert busy.asked() == 1  # it was asked first (affinity), answered 503, never more
            stream = c.post("/api/chat", json=dict(chat_body(1), stream=True))
            assert stream.status_code == 200 and stream.headers[H_UP] == spare.url
            assert status(c)["routing"]["hosts"]["retries"] >= 1


def test_a_model_no_host_has_is_ollamas_404(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    with hosts(("a", fast_sim(), ()), ("b", fast_sim(), ())) as (a, b):
        gw, _ = setup(tmp_path, make_gateway, [(a, {"local": False}), (b, {"local": False})])
        with gw.client() as c:
            # (a host whose list is not known yet would be asked: its own 404 is the answer then)
            assert wait_for(lambda: all(u["models"]["models"] is not None for u in status(c)["upstreams"]))
            r = c.post("/api/generate", json={"model": "llama3:8b", "prompt": "hi", "stream": False})
            assert r.status_code == 404
            assert r.json() == {"error": 'model "llama3:8b" not found, try pulling it first'}
            assert r.headers[H_UP] == "none"
            v = c.post(
                "/v1/chat/completions", json={"model": "llama3:8b", "messages": [{"role": "user", "content": "x"}]}
            )
            assert v.status_code == 404 and "not found" in v.json()["error"]["message"]
            assert (
                a.asked("llama3:8b") == 0 and b.asked("llama3:8b") == 0
            )  # (a warm-up of the suggestion model may run)
            # a pull through powergate refreshes the lists: the model is found at once
            pulled = c.post("/api/pull", json={"model": "llama3:8b", "stream": False})
            assert pulled.status_code == 200
            assert wait_for(
                lambda: (
                    c.post("/api/generate", json={"model": "llama3:8b", "prompt": "hi", "stream": False}).status_code
                    == 200
                )
            )


def test_battery_sends_work_to_the_remote_host(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    # the laptop holds the model and is listed first; the remote desktop is cold
    with hosts(("laptop", fast_sim(), (SMALL,)), ("desk", fast_sim(), ())) as (laptop, desk):
        gw, power = setup(tmp_path, make_gateway, [(laptop, {}), (desk, {"local": False})], plugged=True)
        with gw.client() as c:
            assert host_doc(c, laptop.url)["local"] is True
            assert suggest(c, 0).headers[H_UP] == laptop.url  # on AC: the best score
            power.write_text(json.dumps({"plugged": False, "percent": 70, "cpu_percent": 5}))
            assert wait_for(lambda: status(c)["routing"]["hosts"]["power"] == "battery", timeout=10)
            for i in range(1, 4):
                assert suggest(c, i).headers[H_UP] == desk.url
            assert status(c)["routing"]["hosts"]["decisions"].get("battery", 0) >= 3
            row = host_doc(c, laptop.url)["routing"]
            assert row["parts"]["power_s"] > 0
            power.write_text(json.dumps({"plugged": True, "percent": 70, "cpu_percent": 5}))
            assert wait_for(lambda: status(c)["routing"]["hosts"]["power"] == "ac", timeout=10)
            assert suggest(c, 9).headers[H_UP] == laptop.url


def test_a_queued_suggestion_moves_to_the_host_that_frees_first(tmp_path: Path, make_gateway: GatewayFactory) -> None:
    a_sim = SimOllama(DEFAULT_MODELS[:1], token_delay_s=0.02)  # the suggestion model only
    b_sim = SimOllama(DEFAULT_MODELS[:2], token_delay_s=0.002)  # and the chat model
    with hosts(("a", a_sim, (SMALL,)), ("b", b_sim, (SMALL, MEDIUM))) as (a, b):
        # a weighs more: with both hosts busy, the suggestion queues there
        gw, _ = setup(tmp_path, make_gateway, [(a, {"local": False, "weight": 50}), (b, {"local": False})])
        out: dict[str, httpx.Response] = {}

        def chat(name: str, model: str, n: int) -> None:
            with gw.client() as c:
                out[name] = c.post("/api/chat", json=chat_body(len(name), model=model, n=n))

        long = threading.Thread(target=chat, args=("long", SMALL, 300))  # about 6 s on a
        long.start()
        assert wait_for(lambda: any(e.finished is None and e.model == SMALL for e in a.sim.inference_log()), timeout=10)
        short = threading.Thread(target=chat, args=("short", MEDIUM, 300))  # about 0.6 s on b: only b has it
        short.start()
        assert wait_for(lambda: any(e.finished is None for e in b.sim.inference_log()), timeout=10)
        with gw.client() as c:
            r = suggest(c, 0)
            assert r.status_code == 200
            assert r.headers[H_UP] == b.url  # it waited at a, and b freed first
            doc = status(c)
            assert doc["routing"]["hosts"]["moved"] == 1
            assert doc["scheduling"]["upstreams"][a.url]["moved_away"] == 1
        long.join()
        short.join()
        assert out["long"].headers[H_UP] == a.url and out["short"].headers[H_UP] == b.url
