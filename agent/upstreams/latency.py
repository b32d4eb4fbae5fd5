"""Recent speed of each host, per model, from the answers themselves.

Ollama reports its own durations in every final chunk (`load_duration`,
`prompt_eval_duration`, `eval_count`, `eval_duration`, all in nanoseconds);
OpenAI-style servers do not, so for them the flight's measured wall times are
used. Each figure is an exponential moving average, so a host that slowed down
(another user, thermal throttling) is noticed within a few answers, and a
host-wide average stands in for models not measured there yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EWMA_ALPHA = 0.3  # weight of the newest answer in the moving averages
REAL_LOAD_S = 0.2  # seconds: a smaller load_duration is a warm model's bookkeeping, not a load
NS = 1e9
MAX_TRACKED_MODELS = 256  # per host: a bound on the table, whatever clients send


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + EWMA_ALPHA * (new - old)


@dataclass
class Speed:
    ttft_s: float | None = None  # to the first token, model already loaded
    tokens_per_s: float | None = None
    load_s: float | None = None  # a cold load
    answers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
            "load_s": None if self.load_s is None else round(self.load_s, 3),
            "answers": self.answers,
        }


class HostSpeed:
    """The speeds of one host: per model, and over all its models."""

    def __init__(self) -> None:
        self.models: dict[str, Speed] = {}
        self.overall = Speed()

    def _update(self, model: str, ttft_s: float | None, tps: float | None, load_s: float | None) -> None:
        per = self.models.get(model)
        if per is None:
            if len(self.models) >= MAX_TRACKED_MODELS:
                self.models.pop(next(iter(self.models)))
            per = self.models[model] = Speed()
        for sp in (per, self.overall):
            if ttft_s is not None:
                sp.ttft_s = _ewma(sp.ttft_s, ttft_s)
            if tps is not None:
                sp.tokens_per_s = _ewma(sp.tokens_per_s, tps)
            if load_s is not None and sp is per:  # a load time says nothing about other models
                sp.load_s = _ewma(sp.load_s, load_s)
            sp.answers += 1

    def record_durations(self, model: str, doc: Mapping[str, Any], queued: bool = False) -> bool:
        """An Ollama final chunk's duration fields; False when it carries none.

        Ollama counts time spent waiting for a busy runner as load time, so a call that
        queued behind another tells us nothing about loads."""
        try:
            load_ns = int(doc.get("load_duration") or 0)
            prompt_ns = int(doc.get("prompt_eval_duration") or 0)
            eval_n = int(doc.get("eval_count") or 0)
            eval_ns = int(doc.get("eval_duration") or 0)
        except (TypeError, ValueError):
            return False
        if not (prompt_ns or eval_ns or load_ns):
            return False
        load_s = load_ns / NS if load_ns / NS >= REAL_LOAD_S and not queued else None
        ttft = prompt_ns / NS if prompt_ns else None
        tps = eval_n / (eval_ns / NS) if eval_n and eval_ns else None
        self._update(model, ttft, tps, load_s)
        return True

    def record_wall(self, model: str, ttft_s: float | None, tokens: int, generate_s: float) -> None:
        """Measured wall times, for hosts whose answers carry no durations."""
        tps = tokens / generate_s if tokens and generate_s > 0 else None
        self._update(model, ttft_s, tps, None)

    def speed_for(self, model: str) -> tuple[float | None, float | None, float | None]:
        """(first-token s, tokens/s, load s) for this model, the host's average where unmeasured."""
        per = self.models.get(model) or Speed()
        ttft = per.ttft_s if per.ttft_s is not None else self.overall.ttft_s
        tps = per.tokens_per_s if per.tokens_per_s is not None else self.overall.tokens_per_s
        return ttft, tps, per.load_s

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.as_dict(), "models": {m: s.as_dict() for m, s in self.models.items()}}
