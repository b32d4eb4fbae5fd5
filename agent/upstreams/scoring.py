"""Which host serves a request: the score, its parts, and every constant it uses.

A host's score is the number of seconds we expect the client to wait there for a
typical answer, from what powergate measured itself; lower is better:

    score = (cold + queue + first_token + generate + memory) / weight + power

- cold:        0 when the model is loaded there (Ollama's /api/ps); otherwise the
               model load we last measured on that host (`load_duration`), or
               COLD_LOAD_S before we saw one. A cold load costs seconds, so the
               host that already holds the model wins unless it is busy: affinity
               weighs most.
- queue:       the work ahead of this request in that host's own scheduler
               (in flight + queued beyond its free slots), each job costing the
               host's recent first-token + generate time, shared by its slots.
- first_token: recent time to first token for this model on this host (an
               exponential average of Ollama's `prompt_eval_duration`, or of the
               measured wall time for OpenAI-style hosts), else the host's
               average over its models, else DEFAULT_TTFT_S.
- generate:    TYPICAL_ANSWER_TOKENS at the recent tokens/s there (`eval_count`
               / `eval_duration`), else at DEFAULT_TOKENS_PER_S.
- memory:      LOW_MEMORY_PENALTY_S when the model is not loaded and the host's
               free memory (where reported) is short of what the model needs.
- weight:      the `[[upstream]] weight` the user configured (1..1000); a host of
               weight 2 counts as twice as fast.
- power:       0 on AC. On battery, a `local` host (the laptop's own server)
               counts BATTERY_LOCAL_PENALTY_S slower, so a healthy remote host
               serves every job unless it is hopelessly behind. In battery-saver
               (the profile, or the OS saver) a local host only serves when no
               remote candidate is healthy at all.

Only the functions here decide; the pool gathers the facts off the request path
and calls `rank` once per request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

COLD_LOAD_S = 8.0  # seconds a model load costs before we measured one on that host
UNKNOWN_LOADED_S = COLD_LOAD_S / 2  # the host's loaded models are not known yet: maybe loaded
DEFAULT_TTFT_S = 0.5  # seconds to first token before we measured any on the host
DEFAULT_TOKENS_PER_S = 20.0  # generation speed before we measured any on the host
TYPICAL_ANSWER_TOKENS = 32  # tokens of a typical answer (an editor suggestion is shorter, a chat longer)
LOW_MEMORY_PENALTY_S = COLD_LOAD_S  # loading into too little memory evicts another model or swaps
MEMORY_HEADROOM = 1.2  # a loaded model needs about its file size times this in memory
BATTERY_LOCAL_PENALTY_S = 30.0  # on battery, the laptop's own server counts this much slower
SAVER_LOCAL_PENALTY_S = math.inf  # in battery-saver, the laptop serves only when no remote host can


class Power(str, Enum):
    """The power policy's view, as far as routing cares."""

    AC = "ac"
    BATTERY = "battery"
    SAVER = "battery-saver"

    @classmethod
    def of(cls, plugged: bool | None, saver: bool) -> Power:
        if saver:
            return cls.SAVER
        if plugged is False:
            return cls.BATTERY
        return cls.AC


@dataclass(frozen=True)
class HostFacts:
    """What powergate knows about one candidate host for one model, gathered off the request path."""

    url: str
    local: bool = False
    weight: int = 1
    slots: int = 1
    in_flight: int = 0  # our own requests running there now
    queued: int = 0  # our own requests waiting for one of its slots
    loaded: frozenset[str] | None = None  # models in its memory (/api/ps); None: not known
    ttft_s: float | None = None  # recent first-token time (this model, else the host's average)
    tokens_per_s: float | None = None  # recent generation speed (this model, else the host's average)
    load_s: float | None = None  # recent cold-load time of this model there
    free_memory_mb: float | None = None  # where the host reports it
    model_size_mb: float | None = None  # the model's size on disk, from the host's model list
    order: int = 0  # position in the config: the last tie-breaker


@dataclass(frozen=True)
class Score:
    """A host's score and its parts (all in seconds except weight)."""

    url: str
    total: float
    cold_s: float
    queue_s: float
    first_token_s: float
    generate_s: float
    memory_s: float
    weight: int
    power_s: float
    loaded: bool | None  # the model is in its memory (None: not known)
    local: bool
    order: int = 0

    def as_dict(self) -> dict[str, Any]:
        def r(v: float) -> float | None:
            return None if math.isinf(v) else round(v, 3)

        return {
            "url": self.url,
            "score": r(self.total),
            "parts": {
                "cold_s": r(self.cold_s),
                "queue_s": r(self.queue_s),
                "first_token_s": r(self.first_token_s),
                "generate_s": r(self.generate_s),
                "memory_s": r(self.memory_s),
                "weight": self.weight,
                "power_s": r(self.power_s),
            },
            "model_loaded": self.loaded,
            "local": self.local,
        }


def model_matches(name: str, models: Iterable[str]) -> bool:
    """Ollama resolves `name` and `name:latest` to the same model."""
    wanted = {name, name if ":" in name else f"{name}:latest"}
    if name.endswith(":latest"):
        wanted.add(name[: -len(":latest")])
    return any(m in wanted for m in models)


def cold_seconds(f: HostFacts, model: str) -> tuple[float, bool | None]:
    if f.loaded is None:
        return UNKNOWN_LOADED_S, None
    if model_matches(model, f.loaded):
        return 0.0, True
    return (f.load_s if f.load_s is not None else COLD_LOAD_S), False


def job_seconds(f: HostFacts) -> tuple[float, float]:
    """(first token, generate) seconds of one typical job on this host."""
    ttft = f.ttft_s if f.ttft_s is not None else DEFAULT_TTFT_S
    tps = f.tokens_per_s if f.tokens_per_s else DEFAULT_TOKENS_PER_S
    return ttft, TYPICAL_ANSWER_TOKENS / tps


def queue_seconds(f: HostFacts, per_job_s: float) -> float:
    """Work ahead of a new request: nothing while a slot is free; else the jobs beyond the
    slots, each holding one slot for a typical job's time."""
    slots = max(1, f.slots)
    ahead = f.in_flight + f.queued - slots + 1
    if ahead <= 0:
        return 0.0
    return ahead * per_job_s / slots


def memory_seconds(f: HostFacts, cold: bool | None) -> float:
    if cold is True or f.free_memory_mb is None or f.model_size_mb is None:
        return 0.0
    return LOW_MEMORY_PENALTY_S if f.free_memory_mb < f.model_size_mb * MEMORY_HEADROOM else 0.0


def power_seconds(f: HostFacts, power: Power) -> float:
    if not f.local or power is Power.AC:
        return 0.0
    return SAVER_LOCAL_PENALTY_S if power is Power.SAVER else BATTERY_LOCAL_PENALTY_S


def score_host(f: HostFacts, model: str, power: Power) -> Score:
    """The score of one host for one request (see the module's docstring)."""
    cold, loaded = cold_seconds(f, model)
    ttft, gen = job_seconds(f)
    queue = queue_seconds(f, ttft + gen)
    memory = memory_seconds(f, loaded)
    weight = max(1, f.weight)
    pw = power_seconds(f, power)
    total = (cold + queue + ttft + gen + memory) / weight + pw
    return Score(f.url, total, cold, queue, ttft, gen, memory, weight, pw, loaded, f.local, f.order)


def _key(s: Score) -> tuple[bool, float, int, int]:
    # An infinite power part (battery-saver, local host) sorts after every finite score;
    # such hosts still rank among themselves by the rest of their score.
    exiled = math.isinf(s.power_s)
    return (exiled, s.total - s.power_s if exiled else s.total, -s.weight, s.order)


def rank(hosts: Sequence[HostFacts], model: str, power: Power) -> list[Score]:
    """Candidates best first. Ties go to the heavier weight, then to the config order."""
    return sorted((score_host(h, model, power) for h in hosts), key=_key)


def reason(ranking: Sequence[Score], power: Power) -> str:
    """Why the first of `ranking` serves, in one word for the metrics:

    - `only`: a single candidate;
    - `battery`: without the power part a local host would have won;
    - `affinity`: it holds the model and a better-placed host (by everything but the load) does not;
    - `load`: the host that holds the model is busier than a cold load elsewhere;
    - `score`: anything else (speed, weight, queue).
    """
    if not ranking:
        return "none"
    if len(ranking) == 1:
        return "only"
    best = ranking[0]
    if power is not Power.AC:
        unpowered = min(ranking, key=lambda s: (s.total - s.power_s, -s.weight, s.order))
        if unpowered.local and unpowered is not best:
            return "battery"
    others = ranking[1:]
    if best.loaded and any(s.loaded is not True for s in others):
        return "affinity"
    if not best.loaded and any(s.loaded for s in others):
        return "load"
    return "score"
