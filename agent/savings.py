"""What powergate did for the user: requests served, how many needed no model, the
model time and energy that saved, and the upstream calls it avoided. Since start
and for today (local calendar day).

Fed by two small calls on the request path: `answered(outcome, status)` for every
inference answer (from the metrics middleware, which sees X-Powergate-Cache), and
`model_time(seconds)` when an answer replaced model work (a cache hit, the rest of a
suggestion served by typeahead, a follower of a coalesced call). Requests dropped
before they reached the upstream and superseded completions are counted by the
schedulers; they are read when the figures are, and today's share is kept as the
difference from the counts at the start of the day.

The model time of a stored answer is what the upstream spent on it: Ollama's
`total_duration` of the answer (its own measure), else the wall time of the
upstream call (OpenAI-style servers report no duration). The energy figure is an
estimate: model time saved x `[savings] model_watts`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WITHOUT_MODEL = ("hit-memory", "hit-disk", "hit-redis", "typeahead")  # answered with no model work at all
AVOIDED_CALLS = (*WITHOUT_MODEL, "coalesced")  # answered without an upstream call of their own
SECONDS_PER_HOUR = 3600.0
KEYS = ("requests", "served_without_model", "model_time_saved_s", "upstream_calls_avoided", "energy_saved_wh")


@dataclass
class Tally:
    requests: int = 0
    served_without_model: int = 0
    calls_avoided: int = 0  # hits, typeahead, coalesced (scheduler counts are added on reading)
    model_time_s: float = 0.0


def _today() -> dt.date:
    return dt.date.today()


class Savings:
    def __init__(self, model_watts: float, today: Callable[[], dt.date] = _today) -> None:
        self.model_watts = model_watts
        self._today = today
        self.total = Tally()
        self.day = Tally()
        self.day_date = today()
        self._day_base_sched = 0  # scheduler counts (dropped + superseded) when today began
        self._last_sched = 0

    def _roll(self) -> None:
        d = self._today()
        if d != self.day_date:
            self.day_date = d
            self.day = Tally()
            self._day_base_sched = self._last_sched

    # ------------------------------------------------------------ recording (hot path)
    def answered(self, outcome: str, status: int) -> None:
        """An inference request was answered with this X-Powergate-Cache outcome."""
        if not 200 <= status < 300:
            return
        self._roll()
        for t in (self.total, self.day):
            t.requests += 1
            if outcome in WITHOUT_MODEL:
                t.served_without_model += 1
            if outcome in AVOIDED_CALLS:
                t.calls_avoided += 1

    def model_time(self, seconds: float) -> None:
        """An answer replaced this much upstream model time."""
        if seconds <= 0:
            return
        self._roll()
        self.total.model_time_s += seconds
        self.day.model_time_s += seconds

    # ------------------------------------------------------------ reading
    def _figures(self, t: Tally, sched: int) -> dict[str, Any]:
        return {
            "requests": t.requests,
            "served_without_model": t.served_without_model,
            "model_time_saved_s": round(t.model_time_s, 3),
            "upstream_calls_avoided": t.calls_avoided + sched,
            "energy_saved_wh": round(t.model_time_s * self.model_watts / SECONDS_PER_HOUR, 4),
        }

    def describe(self, scheduler_avoided: int) -> dict[str, Any]:
        """The `savings` object: the INTERFACE keys since start, plus `today` and how the
        energy is estimated. `scheduler_avoided`: dropped-before-upstream + superseded so far."""
        self._last_sched = scheduler_avoided
        self._roll()
        out = self._figures(self.total, scheduler_avoided)
        out["today"] = self._figures(self.day, scheduler_avoided - self._day_base_sched)
        out["model_watts"] = self.model_watts
        out["energy_is_estimate"] = True
        return out


def entry_model_seconds(chunks: list[bytes], meta: dict[str, Any]) -> float:
    """The upstream model time a stored answer cost (see the module's docstring)."""
    import json

    if chunks:
        try:
            doc = json.loads(chunks[-1])
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            ns = doc.get("total_duration")
            if isinstance(ns, (int, float)) and not isinstance(ns, bool) and ns > 0:
                return float(ns) / 1e9
    wall = meta.get("model_s")
    return float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) and wall > 0 else 0.0


def typeahead_share(rest: str, completion: str) -> float:
    """The part of a stored suggestion that typeahead served: its share of the model time."""
    return min(1.0, len(rest) / len(completion)) if completion else 0.0
