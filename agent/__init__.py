"""powergate: a power-aware local gateway in front of Ollama."""

from __future__ import annotations

__version__ = "0.1.0"
