"""A simulated Ollama server for tests and benchmarks.

Faithful to the parts of Ollama's HTTP API powergate relies on: JSON shapes,
NDJSON streaming, status codes and error bodies, keep_alive and model load
time, per-token timing, runner-option reloads, one generation at a time per
model with a bounded queue, and a request log tests can assert on.
"""

from tests.simollama.app import SimModel, SimOllama, build_app
from tests.simollama.server import SimServer

__all__ = ["SimModel", "SimOllama", "SimServer", "build_app"]
