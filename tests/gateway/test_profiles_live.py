"""Profiles in a running agent: automatic switching, manual choice, routing, keep_alive."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.conftest import Gateway, GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL, MEDIUM, LARGE = "qwen2.5-coder:1.5b", "qwen2.5-coder:7b", "qwen2.5-coder:14b"


class PoweredGateway:
    def __init__(self, gw: Gateway, power_file: Path) -> None:
        self.gw = gw
        self.power_file = power_file

    def set_power(self, **state: Any) -> None:
        doc = {"plugged": True, "percent": 80, "cpu_percent": 5, "ram_available_mb": 8000}
        doc.update(state)
        tmp = self.power_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.power_file)

    def status(self) -> dict[str, Any]:
        return httpx.get(self.gw.url + "/agent/status", timeout=10).json()

    def profile_is(self, name: str, mode: str = "auto") -> bool:
        s = self.status()
        return s["profile"] == name and s["mode"] == mode

    def put(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.put(self.gw.url + "/agent/profile", json=body, timeout=10)


@pytest.fixture
def powered(sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path) -> PoweredGateway:
    pfile = tmp_path / "power-live.json"
    pg = PoweredGateway(None, pfile)  # type: ignore[arg-type]
    pg.set_power(plugged=True)
    pg.gw = make_gateway(sim.url, config=f'[power]\nsource = "file:{pfile.as_posix()}"\ninterval_s = 0.1\n')
    return pg


def test_auto_mode_follows_power_with_reasons(powered: PoweredGateway) -> None:
    assert wait_for(lambda: powered.profile_is("performance"))
    powered.set_power(plugged=False, percent=60)
    assert wait_for(lambda: powered.profile_is("balanced"))
    powered.set_power(plugged=False, percent=18)
    assert wait_for(lambda: powered.profile_is("battery-saver"))
    powered.set_power(plugged=False, percent=22)  # between the levels: stays
    powered.set_power(plugged=True, percent=22)
    assert wait_for(lambda: powered.profile_is("performance"))
    s = powered.status()
    reasons = [h["reason"] for h in s["history"]]
    assert "on battery" in reasons and "on AC" in reasons and any("battery at 18%" in r for r in reasons)
    assert s["power"]["plugged"] is True and s["power"]["percent"] == 22


def test_manual_choice_lasts_until_the_charger_changes(powered: PoweredGateway) -> None:
    assert wait_for(lambda: powered.profile_is("performance"))
    r = powered.put({"profile": "battery-saver"})
    assert r.status_code == 200 and r.json()["mode"] == "manual"
    assert not wait_for(lambda: powered.status()["profile"] != "battery-saver", timeout=0.5)  # the policy keeps out
    powered.set_power(plugged=False, percent=70)
    assert wait_for(lambda: powered.profile_is("balanced"))  # auto resumed on unplug
    history = powered.status()["history"]
    assert any("back to auto" in h["reason"] for h in history)


def test_pinned_manual_survives_power_changes(powered: PoweredGateway) -> None:
    powered.put({"profile": "battery-saver", "mode": "manual"})
    powered.set_power(plugged=False, percent=70)
    assert not wait_for(lambda: powered.status()["profile"] != "battery-saver", timeout=0.6)
    assert powered.status()["mode"] == "manual" and powered.status()["pinned"] is True
    r = powered.put({"mode": "auto"})
    assert r.json()["profile"] == "balanced" and r.json()["mode"] == "auto"


def test_bad_profile_name_lists_the_valid_ones(powered: PoweredGateway) -> None:
    r = powered.put({"profile": "turbo"})
    assert r.status_code == 400 and "auto, performance, balanced, battery-saver" in r.json()["error"]
    assert powered.put({"mode": "sometimes"}).status_code == 400
    assert powered.put({}).status_code == 400


def gen(gw: Gateway, model: str, prompt: str = "x", **kw: Any) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False}
    body.update(kw)
    return httpx.post(gw.url + "/api/generate", json=body, timeout=30)


def test_aliases_caps_and_auto_per_profile(powered: PoweredGateway, sim: SimServer) -> None:
    gw = powered.gw
    powered.put({"profile": "performance"})
    assert gen(gw, "autocomplete", suffix="\n").headers["x-powergate-model"] == MEDIUM
    assert gen(gw, "chat").headers["x-powergate-model"] == LARGE
    assert gen(gw, "auto", prompt="hi").headers["x-powergate-model"] == SMALL
    hard = (
        "Explain why this async mutex design can deadlock under concurrency and how to refactor it? " * 20
        + "```py\nx\n```"
    )
    assert gen(gw, "auto", prompt=hard).headers["x-powergate-model"] == LARGE
    assert gen(gw, LARGE).headers["x-powergate-model"] == LARGE  # no cap enforced
    powered.put({"profile": "balanced"})
    assert gen(gw, "auto", prompt=hard + " ").headers["x-powergate-model"] == MEDIUM  # auto stays under the cap
    assert gen(gw, LARGE, prompt="y").headers["x-powergate-model"] == LARGE  # passed through
    powered.put({"profile": "battery-saver"})
    r = gen(gw, LARGE, prompt="z")
    assert r.headers["x-powergate-model"] == SMALL and r.json()["model"] == SMALL  # capped, and the body says so
    assert sim.sim.inference_log()[-1].model == SMALL
    with ollama.Client(host=gw.url) as c:
        assert c.chat(model="chat", messages=[{"role": "user", "content": "q"}]).model == SMALL
        assert len(c.embed(model="embed", input="e").embeddings[0]) == 768
    assert powered.status()["routing"]["capped"] >= 1


def test_runner_options_normalised_so_the_model_loads_once(powered: PoweredGateway, sim: SimServer) -> None:
    gw = powered.gw
    powered.put({"profile": "balanced"})
    for i, ctx in enumerate([2048, 8192, None, 4096, 16384]):
        opts = {"num_ctx": ctx, "num_batch": 64 * (i + 1), "num_thread": i + 1} if ctx else {}
        assert gen(gw, SMALL, prompt=f"p{i}", options=opts, keep_alive="1h").status_code == 200
    sent = [e.body for e in sim.sim.inference_log()]
    # num_ctx only ever rounded up: the profile's 4096, the client's bigger 8192, then the
    # loaded runner's 8192 for the clients that ask less or nothing, the client's 16384
    assert [b["options"]["num_ctx"] for b in sent] == [4096, 8192, 8192, 8192, 16384]
    assert all("num_batch" not in b["options"] and "num_thread" not in b["options"] for b in sent)
    assert {b["keep_alive"] for b in sent} == {"10m"}  # the profile's, not the client's
    assert sim.sim.loads == 3  # not 5: 2048, None and 4096 reuse the loaded runner
    assert powered.status()["routing"]["reloads_avoided"] == 4
    powered.put({"profile": "battery-saver"})
    gen(gw, SMALL, prompt="saver")
    last = sim.sim.inference_log()[-1].body
    # the loaded runner's context is kept (a smaller one would reload the model)
    assert last["keep_alive"] == "2m" and last["options"]["num_ctx"] == 16384 and last["options"]["num_thread"] >= 1


def test_switch_to_battery_saver_unloads_models_above_the_cap(powered: PoweredGateway, sim: SimServer) -> None:
    gw = powered.gw
    powered.put({"profile": "performance"})
    gen(gw, LARGE, prompt="big")
    gen(gw, SMALL, prompt="small")
    assert {LARGE, SMALL} <= set(sim.sim.loaded)  # (plus the autocomplete model the warm-up loaded)
    powered.put({"profile": "battery-saver"})
    assert wait_for(lambda: set(sim.sim.loaded) == {SMALL})
    assert powered.status()["routing"]["unloads"] == len(
        {LARGE, MEDIUM} & set(s.model for s in sim.sim.inference_log(include_loads=True))
    )


def test_memory_pressure_shrinks_cache_and_unloads(powered: PoweredGateway, sim: SimServer) -> None:
    gw = powered.gw
    powered.put({"mode": "auto"})
    assert wait_for(lambda: powered.profile_is("performance"))
    gen(gw, LARGE, prompt="big")
    gen(gw, MEDIUM, prompt="medium", suffix="\n")  # performance's autocomplete model stays
    powered.set_power(plugged=True, ram_available_mb=500)
    assert wait_for(lambda: gw.runtime.cache.memory_budget == 16 * 1024 * 1024)  # answers + typeahead
    assert wait_for(lambda: set(sim.sim.loaded) == {MEDIUM})
    assert powered.status()["policy"]["memory_pressure"] is True
    powered.set_power(plugged=True, ram_available_mb=6000)
    assert wait_for(lambda: gw.runtime.cache.memory_budget == 256 * 1024 * 1024)


def test_switch_mid_request_drops_nothing_and_mixes_nothing(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    with SimServer(SimOllama(token_delay_s=0.03, default_tokens=30)) as slow:
        gw = make_gateway(slow.url, profile="performance")
        result: dict[str, Any] = {}

        def call() -> None:
            with httpx.stream(
                "POST",
                gw.url + "/api/chat",
                json={"model": "chat", "messages": [{"role": "user", "content": "long"}]},
                timeout=30,
            ) as r:
                result["headers"] = dict(r.headers)
                result["lines"] = [json.loads(x) for x in r.iter_lines() if x]

        t = threading.Thread(target=call)
        t.start()
        assert wait_for(lambda: bool(slow.sim.inference_log()), timeout=5)
        httpx.put(gw.url + "/agent/profile", json={"profile": "battery-saver"}, timeout=10)
        t.join()
        assert result["headers"]["x-powergate-profile"] == "performance"
        assert result["headers"]["x-powergate-model"] == LARGE
        assert result["lines"][-1]["done"] is True and len(result["lines"]) == 31
        assert {line["model"] for line in result["lines"]} == {LARGE}
        after = httpx.post(
            gw.url + "/api/chat",
            json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": False},
            timeout=30,
        )
        assert after.headers["x-powergate-profile"] == "battery-saver" and after.json()["model"] == SMALL
