"""An editor's abort: powergate keeps the slot until the server has finished the prompt
evaluation it cannot interrupt, so the next suggestion waits in our queue, not in the server's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import GatewayFactory, wait_for
from tests.simollama import SimOllama, SimServer

SMALL = "qwen2.5-coder:1.5b"
PROMPT = "def handler(request):\n" * 20


@pytest.fixture
def slow_prompt_sim() -> Iterator[SimServer]:
    with SimServer(SimOllama(prompt_delay_s=0.6, token_delay_s=0.01, one_slot=True)) as srv:
        yield srv


def fim(prompt: str) -> dict[str, object]:
    return {"model": SMALL, "prompt": prompt, "suffix": "\n", "stream": False, "options": {"num_predict": 3}}


@pytest.mark.slow
def test_an_aborted_suggestion_keeps_the_slot_while_the_server_evaluates_its_prompt(
    slow_prompt_sim: SimServer, make_gateway: GatewayFactory
) -> None:
    gw = make_gateway(slow_prompt_sim.url, profile="battery-saver")  # no prefetch noise
    # one suggestion answered: powergate has measured this server's prompt rate
    assert httpx.post(gw.url + "/api/generate", json=fim(PROMPT + "a"), timeout=30).status_code == 200
    assert gw.runtime.upstreams.primary.scheduler.prompt_tps > 0
    with pytest.raises(httpx.ReadTimeout):  # the editor aborts while the prompt is evaluated
        httpx.post(gw.url + "/api/generate", json=fim(PROMPT + "b"), timeout=0.2)
    r = httpx.post(gw.url + "/api/generate", json=fim(PROMPT + "c"), timeout=30)
    assert r.status_code == 200
    log = {e.body["prompt"][-1]: e for e in slow_prompt_sim.sim.inference_log()}
    aborted, nxt = log["b"], log["c"]
    assert aborted.cancelled
    assert wait_for(lambda: aborted.finished is not None)
    # the next suggestion reached the server only once the aborted one had let the slot go
    assert aborted.finished is not None and nxt.started >= aborted.finished - 0.05
    sched = httpx.get(gw.url + "/agent/status", timeout=5).json()["scheduling"]["upstreams"]
    assert next(iter(sched.values()))["held_after_abort"] == 1
