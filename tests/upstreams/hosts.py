"""Several simulated Ollama hosts for routing tests and the bench.

Each host is a real HTTP server (tests/simollama under uvicorn on its own loopback
port) with its own speed, its own models loaded, and the ways real hosts fail:
killed (connections reset, then refused) and brought back on the same port with
an empty memory, like a restarted `ollama serve`; or so busy that Ollama answers
503 "server busy" (its pending-request limit reached).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.simollama import SimOllama, SimServer
from tests.simollama.app import DEFAULT_MODELS, RUNNER_OPTIONS, Loaded

SMALL = "qwen2.5-coder:1.5b"
MEDIUM = "qwen2.5-coder:7b"
EMBED = "nomic-embed-text:latest"
BALANCED_NUM_CTX = 4096  # what powergate sends in the balanced profile (the runner a preload must match)


def preload(sim: SimOllama, model: str, num_ctx: int = BALANCED_NUM_CTX, num_thread: int | None = None) -> None:
    """Put `model` in the simulated host's memory, with the runner options powergate will send
    (Ollama reloads a model whose runner options differ)."""
    options = {"num_ctx": num_ctx, "num_thread": num_thread}
    runner = tuple(options.get(k) for k in RUNNER_OPTIONS)
    sim.loaded[model] = Loaded(sim.models[model], runner, math.inf)


@dataclass
class Host:
    name: str
    sim: SimOllama
    server: SimServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def served(self, model: str | None = None) -> int:
        """Inference answers this host finished with 200 (load-only calls excluded)."""
        return sum(
            1
            for e in self.sim.inference_log()
            if e.finished and e.status == 200 and not e.cancelled and (model is None or e.model == model)
        )

    def asked(self, model: str | None = None) -> int:
        """Inference requests (for `model`) that reached this host at all, whatever came of them."""
        log = self.sim.inference_log(include_loads=True)
        return sum(1 for e in log if model is None or e.body.get("model") == model)

    def kill(self) -> None:
        """Die like a killed process: the listening socket closes and every open connection
        is reset at once (uvicorn's own shutdown would let running answers finish)."""
        srv = self.server._server
        loop = srv.servers[0].get_loop()
        done = threading.Event()

        def abort_all() -> None:
            for s in srv.servers:
                s.close()
            for conn in list(srv.server_state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()
            done.set()

        loop.call_soon_threadsafe(abort_all)
        done.wait(5)
        srv.should_exit = True
        srv.force_exit = True
        self.server._thread.join(timeout=10)

    def revive(self) -> None:
        """Start again on the same port with an empty memory, like a restarted server."""
        self.sim.loaded.clear()
        self.sim._slots.clear()  # its semaphores belonged to the dead server's event loop
        self.sim._pending = 0
        self.server = SimServer(self.sim, port=self.port).start()

    def stop(self) -> None:
        if self.server._thread.is_alive():
            self.server.stop()


def make_host(name: str, sim: SimOllama, loaded: tuple[str, ...] = ()) -> Host:
    for model in loaded:
        preload(sim, model)
    return Host(name, sim, SimServer(sim).start())


@contextmanager
def hosts(*specs: tuple[str, SimOllama, tuple[str, ...]]) -> Iterator[list[Host]]:
    started: list[Host] = []
    try:
        for name, sim, loaded in specs:
            started.append(make_host(name, sim, loaded))
        yield started
    finally:
        for h in started:
            h.stop()


def fast_sim(**kw: object) -> SimOllama:
    """A desktop with a GPU: quick tokens, a model load of a fraction of a second."""
    return SimOllama(DEFAULT_MODELS, load_time_s=0.3, token_delay_s=0.002, **kw)  # type: ignore[arg-type]


def slow_sim(**kw: object) -> SimOllama:
    """A laptop CPU: slower tokens and loads."""
    return SimOllama(DEFAULT_MODELS, load_time_s=0.6, token_delay_s=0.01, **kw)  # type: ignore[arg-type]


def busy_sim() -> SimOllama:
    """A host whose Ollama refuses every inference with 503 "server busy" (OLLAMA_MAX_QUEUE reached)."""
    return SimOllama(DEFAULT_MODELS, max_queue=0)
