"""Simulated llama.cpp and OpenAI-compatible servers (see app.py)."""

from __future__ import annotations

from tests.simollama.server import SimServer
from tests.simopenai.app import SimModel, SimOpenAI, build_app


class SimOpenAIServer(SimServer):
    """A SimOpenAI under uvicorn in a background thread; `.api` is its state."""

    def __init__(self, api: SimOpenAI | None = None) -> None:
        self.api = api or SimOpenAI()
        super().__init__(app=build_app(self.api))


__all__ = ["SimModel", "SimOpenAI", "SimOpenAIServer"]
