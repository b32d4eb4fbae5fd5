"""Choosing the host for one request, from what the background checks and the answers told us.

Everything here is cheap and synchronous: no I/O happens on the request path. The
facts come from each host's record (its breaker, its last background check, its
recent speeds) and from the live counts of its scheduler, the score from
`agent.upstreams.scoring`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ModelNotFound
from agent.upstreams.breaker import Breaker, HostInfo, HostState
from agent.upstreams.latency import HostSpeed
from agent.upstreams.scoring import HostFacts, Power, Score, model_matches, rank, reason

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass
class HostRecord:
    """What powergate knows about one configured host, kept between requests."""

    url: str
    local: bool = False
    weight: int = 1
    order: int = 0
    breaker: Breaker = field(default_factory=Breaker)
    info: HostInfo = field(default_factory=HostInfo)
    speed: HostSpeed = field(default_factory=HostSpeed)
    served: Counter[str] = field(default_factory=Counter)  # decisions that chose it, by reason
    free_memory_mb: float | None = None  # a local host: the laptop's own available RAM

    def has(self, model: str) -> bool | None:
        """Does its last model list name `model`? None before the first list."""
        if self.info.models is None:
            return None
        return model_matches(model, self.info.models)

    def model_size_mb(self, model: str) -> float | None:
        models = self.info.models or {}
        for name in (model, f"{model}:latest"):
            if name in models:
                return models[name]
        return None


# (in flight, queued, slots) of one host's scheduler, by URL
LoadOf = Callable[[str], tuple[int, int, int]]


@dataclass(frozen=True)
class Choice:
    """The hosts to try for one request, best first, and why the first one."""

    ranking: list[Score]
    reason: str
    last_resort: bool = False  # every host with the model rests: trying the one that wakes first

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.ranking]


def facts_for(record: HostRecord, model: str, load: tuple[int, int, int]) -> HostFacts:
    in_flight, queued, slots = load
    ttft, tps, load_s = record.speed.speed_for(model)
    return HostFacts(
        url=record.url,
        local=record.local,
        weight=record.weight,
        slots=slots,
        in_flight=in_flight,
        queued=queued,
        loaded=record.info.loaded,
        ttft_s=ttft,
        tokens_per_s=tps,
        load_s=load_s,
        free_memory_mb=record.free_memory_mb,
        model_size_mb=record.model_size_mb(model),
        order=record.order,
    )


def choose(records: Sequence[HostRecord], model: str, power: Power, load: LoadOf) -> Choice:
    """Rank the hosts that may serve `model` now.

    A host whose model list lacks the model is no candidate (a host not listed yet
    is). When no listed host has it, ModelNotFound: Ollama's own 404. Resting and
    probing hosts are left alone; only when every host that has the model rests is
    the one whose rest ends first tried, so a single-host setup answers as soon as
    its server is back (a refused connection costs no more than refusing)."""
    having = [r for r in records if r.has(model) is not False]
    if not having:
        raise ModelNotFound(model)
    serving = [r for r in having if r.breaker.serves()]
    if not serving:
        wakes_first = min(having, key=lambda r: (r.breaker.state is HostState.PROBING, r.breaker.rest_until))
        ranking = rank([facts_for(wakes_first, model, load(wakes_first.url))], model, power)
        return Choice(ranking, "last-resort", last_resort=True)
    ranking = rank([facts_for(r, model, load(r.url)) for r in serving], model, power)
    return Choice(ranking, reason(ranking, power))


def describe_scores(records: Sequence[HostRecord], model: str, power: Power, load: LoadOf) -> list[dict[str, Any]]:
    """Each host's score and parts for `model` (for the status document and the dashboard)."""
    now = time.time()
    out = []
    for r in records:
        score = rank([facts_for(r, model, load(r.url))], model, power)[0]
        doc = score.as_dict()
        doc.update(
            {
                "state": r.breaker.describe(now),
                "has_model": r.has(model),
                "served": dict(r.served),
                "speed": r.speed.as_dict()["overall"],
            }
        )
        out.append(doc)
    return out
