"""Item 2: a stream cut by a dying upstream looks broken, never complete.

A real simulated-Ollama process is killed (SIGKILL) in the middle of an answer. Through
powergate the client then gets the error line Ollama itself writes mid-stream
(`{"error": ...}` on NDJSON, an error event on SSE) and a connection aborted without
the chunked terminator, so the official `ollama` and `openai` clients raise, curl
exits non-zero, and followers of a coalesced stream see the same.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from tests.conftest import ROOT, Gateway, GatewayFactory, free_port, wait_for

SMALL = "qwen2.5-coder:1.5b"
TOKENS = 400
TOKEN_DELAY_S = 0.05  # 20 s per answer: it is always mid-stream when killed


class SimProcess:
    """`python -m tests.simollama` in its own process, so that it can really die."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.simollama", "--port", str(self.port)]
            + ["--token-delay", str(TOKEN_DELAY_S), "--tokens", str(TOKENS)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(self._up, timeout=30, interval=0.1):
            self.kill()
            pytest.fail("the simulated Ollama did not start")

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/api/version", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def dying() -> Iterator[SimProcess]:
    sim = SimProcess()
    yield sim
    sim.kill()


@pytest.fixture
def gw(dying: SimProcess, make_gateway: GatewayFactory) -> Gateway:
    return make_gateway(dying.url)


def test_ollama_client_raises_when_ollama_dies_mid_generate(gw: Gateway, dying: SimProcess) -> None:
    client = ollama.Client(host=gw.url)
    parts = []
    with pytest.raises((ollama.ResponseError, httpx.HTTPError)) as err:
        for part in client.generate(model=SMALL, prompt="def f():", options={"temperature": 0}, stream=True):
            parts.append(part)
            if len(parts) == 3:
                dying.kill()
    assert len(parts) >= 3 and not any(p.done for p in parts)
    if isinstance(err.value, ollama.ResponseError):
        assert "before the answer was complete" in err.value.error


def test_ollama_client_raises_when_ollama_dies_mid_chat_uncached(gw: Gateway, dying: SimProcess) -> None:
    client = ollama.Client(host=gw.url, headers={"Cache-Control": "no-cache, no-store"})
    parts = []
    with pytest.raises((ollama.ResponseError, httpx.HTTPError)):
        for part in client.chat(model=SMALL, messages=[{"role": "user", "content": "hi"}], stream=True):
            parts.append(part)
            if len(parts) == 3:
                dying.kill()
    assert len(parts) >= 3 and not any(p.done for p in parts)


@pytest.mark.parametrize("cache_control", ["", "no-cache, no-store"])
def test_openai_client_raises_when_ollama_dies(gw: Gateway, dying: SimProcess, cache_control: str) -> None:
    client = openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key="unused",
        default_headers={"Cache-Control": cache_control} if cache_control else None,
    )
    chunks = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        stream = client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "hi"}], temperature=0, stream=True
        )
        for c in stream:
            chunks.append(c)
            if len(chunks) == 3:
                dying.kill()
    assert len(chunks) >= 3 and all(c.choices[0].finish_reason is None for c in chunks if c.choices)
    client.close()


def _read_raw(gw: Gateway, body: dict[str, object], started: threading.Event, out: dict[str, object]) -> None:
    lines: list[bytes] = []
    try:
        with httpx.Client(base_url=gw.url, timeout=60, trust_env=False) as c:
            with c.stream("POST", "/api/generate", json=body) as r:
                out["cache"] = r.headers.get("x-powergate-cache")
                for line in r.iter_lines():
                    lines.append(line.encode())
                    started.set()
        out["error"] = None
    except httpx.HTTPError as exc:
        out["error"] = exc
    finally:
        out["lines"] = lines
        started.set()


def test_coalesced_followers_see_the_break_too(gw: Gateway, dying: SimProcess) -> None:
    body = {"model": SMALL, "prompt": "shared", "options": {"temperature": 0}, "stream": True}
    first_started, second_started = threading.Event(), threading.Event()
    first: dict[str, object] = {}
    second: dict[str, object] = {}
    t1 = threading.Thread(target=_read_raw, args=(gw, body, first_started, first))
    t1.start()
    assert first_started.wait(30)
    t2 = threading.Thread(target=_read_raw, args=(gw, body, second_started, second))
    t2.start()
    assert second_started.wait(30)
    dying.kill()
    t1.join(60)
    t2.join(60)
    assert second["cache"] == "coalesced"
    for out in (first, second):
        lines = out["lines"]
        assert isinstance(lines, list) and lines
        last = json.loads(lines[-1])
        assert "error" in last and "done" not in last  # Ollama's own mid-stream error line
        assert not any(json.loads(x).get("done") for x in lines)
        assert isinstance(out["error"], httpx.RemoteProtocolError)  # no clean chunked end
    # nothing truncated was stored: the same request now misses (and fails: Ollama is gone)
    with gw.client() as c:
        r = c.post("/api/generate", json=dict(body, stream=False))
    assert r.status_code == 502 and r.headers["x-powergate-cache"] != "hit-memory"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_exits_non_zero(gw: Gateway, dying: SimProcess) -> None:
    body = json.dumps({"model": SMALL, "prompt": "curl me", "stream": True})
    proc = subprocess.Popen(
        ["curl", "-sS", "-N", "--no-progress-meter", "-d", body, gw.url + "/api/generate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    dying.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, (out[-300:], err)
    assert b'"error"' in out.splitlines()[-1]
