"""One simulated Ollama and one powergate in front of it, shared by the client tests of a module.

Every client test runs the same calls twice, against the simulated Ollama directly
and through powergate, and compares what the client got.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_settings
from agent.server import AgentServer
from tests.conftest import free_port
from tests.simollama import SimOllama, SimServer


@dataclass
class Pair:
    sim: SimServer
    gateway: str  # powergate's base URL
    runtime: Any

    @property
    def direct(self) -> str:
        return self.sim.url

    def both(self, call: Callable[[str], Any]) -> tuple[Any, Any]:
        """`call(base_url)` directly, then through powergate."""
        return call(self.direct), call(self.gateway)

    def sent(self, path: str) -> list[dict[str, Any]]:
        """Bodies that reached the simulated Ollama on `path`, in order."""
        return [e.body for e in self.sim.sim.inference_log() if e.path == path]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimOllama()) as sim:
        cfg = Path(tmp) / "config.toml"
        power = Path(tmp) / "power.json"
        power.write_text(json.dumps({"plugged": False, "percent": 80}))  # balanced
        cfg.write_text(f'[power]\nsource = "file:{power.as_posix()}"\n')
        settings = load_settings(
            config_file=cfg, data_dir=Path(tmp) / "data", host="127.0.0.1", port=free_port(), upstreams=[sim.url]
        )
        server = AgentServer(settings)
        server.start()
        try:
            yield Pair(sim, f"http://127.0.0.1:{settings.server.port}", server.runtime)
        finally:
            server.stop()
