"""One simulated Ollama and one powergate in front of it, shared by the client tests of a module.

Every client test runs the same calls twice, against the simulated Ollama directly
and through powergate, and compares what the client got.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import balanced_gateway_over_sim
from tests.simollama import SimServer


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
    with balanced_gateway_over_sim() as (sim, url, runtime):
        yield Pair(sim, url, runtime)
