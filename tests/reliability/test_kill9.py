"""Crash safety: an agent killed with SIGKILL while streaming answers are being written,
again and again, leaves no corrupt cache entry and starts each time."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import diskcache
import httpx
import pytest

from agent.cache.base import Entry
from agent.cache.codec import Codec
from tests.conftest import agent_up, free_port, start_agent, wait_for
from tests.simollama import SimOllama, SimServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]
ROUNDS = 6  # kill -9 restarts
WRITERS = 4  # clients streaming distinct answers at every kill
RUN_S = 1.0  # seconds of writing before each kill


def _write(url: str, stop: threading.Event, tag: str) -> None:
    i = 0
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
        while not stop.is_set():
            body = {"model": "qwen2.5-coder:1.5b", "prompt": f"{tag} #{i}#", "options": {"temperature": 0}}
            try:
                with c.stream("POST", "/api/generate", json=body) as r:
                    for _ in r.iter_lines():
                        pass
            except httpx.HTTPError:
                return  # the agent died under us: that is the point
            i += 1


def test_kill_9_loop_leaves_no_corrupt_entry(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    power = tmp_path / "power.json"
    power.write_text('{"plugged": true, "percent": 100, "cpu_percent": 3}')
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n')
    with SimServer(SimOllama(token_delay_s=0.002, default_tokens=60)) as sim:
        env = dict(os.environ, POWERGATE_PORT=str(port), POWERGATE_UPSTREAM=sim.url, POWERGATE_CONFIG=str(cfg))
        env["POWERGATE_DATA_DIR"] = str(data)
        url = f"http://127.0.0.1:{port}"
        for round_ in range(ROUNDS):
            proc = start_agent(env, "--no-tray", capture=False)
            try:
                assert wait_for(lambda: agent_up(port), timeout=30, interval=0.1), f"no start in round {round_}"
                stop = threading.Event()
                writers = [
                    threading.Thread(target=_write, args=(url, stop, f"r{round_}w{w}"), daemon=True)
                    for w in range(WRITERS)
                ]
                for t in writers:
                    t.start()
                time.sleep(RUN_S)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                stop.set()
                for t in writers:
                    t.join(15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    # every entry on disk decodes as a whole answer
    cache = diskcache.Cache(str(data / "cache"))
    try:
        codec = Codec()
        keys = list(cache.iterkeys())
        assert len(keys) >= ROUNDS, "answers were stored between the kills"
        corrupt = []
        for k in keys:
            try:
                e = Entry.decode(codec.unpack(cache[k]))
                assert e.chunks and b'"done":true' in e.chunks[-1].replace(b" ", b"")
            except Exception as exc:  # any failure is a corrupt entry
                corrupt.append((k, exc))
        assert not corrupt, corrupt[:3]
    finally:
        cache.close()
