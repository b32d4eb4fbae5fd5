"""Run a SimOllama under uvicorn in a background thread (for fixtures and bench)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from tests.simollama.app import SimOllama, build_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimServer:
    def __init__(self, sim: SimOllama | None = None, port: int | None = None, app: ASGIApp | None = None) -> None:
        """Serve `sim` (a simulated Ollama), or any other simulated server's `app`."""
        self.sim = sim or SimOllama()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or build_app(self.sim),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            loop="asyncio",
            http="httptools",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="sim-ollama", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def start(self) -> SimServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("simulated Ollama did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
