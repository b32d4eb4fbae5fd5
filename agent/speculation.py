"""Does speculative prefetch pay for itself? Measured per model, decided per guess.

A small model's guesses of the next suggestion rarely match what the user
types next, and every guess costs a whole generation of model time (on a
laptop: battery and heat). So each speculative prefetch's outcome is recorded
per model: *used* (a later request was answered from it, or joined it while it
ran) or *wasted* (cancelled, failed, or completed and then passed over by
`UNUSED_AFTER_REQUESTS` requests of its model, or not used within
`UNUSED_AFTER_S`). Over a sliding window of the last `WINDOW` outcomes, the
prefetcher speculates only while the used share stays at or above the model's
threshold. Until that is known (`MIN_OUTCOMES`) and while it is not met, one
guess at a time: the next only once the last one's outcome is in, and below the
threshold one probe guess every `PROBE_EVERY_S`, doubling after each wasted probe
up to `MAX_PROBE_EVERY_S` and back to `PROBE_EVERY_S` once a guess is used, keeps
the figure current, so speculation comes back when the user's typing becomes
predictable again (repetitive code, accepting whole suggestions) and costs next
to nothing while it does not.

The threshold is measured, not a constant: speculation pays for itself when
the model time its used guesses save is at least what all its guesses cost.
Every served suggestion is followed by one guess (mean model time `g`, measured
per model over its recent guesses); a used guess spares the user's next request
its own generation (mean `r`, measured over the model's recent suggestions).
Over N suggestions with a used share `u` that is N*g spent and u*N*r saved, so
speculation breaks even at `u = g / r`, the threshold, kept between
`MIN_THRESHOLD` (wall-clock estimates are noisy) and `MAX_THRESHOLD` (above it a
guess would cost more model time than it saves, but half of them used is still
worth the latency in the performance profile). Until both costs have
`MIN_COST_SAMPLES` samples it is `DEFAULT_MIN_USED_SHARE`. On the real model
(Gemma 3 270M, 2 cores) a guess continues from the suggestion the server has just
evaluated and costs a fraction of a suggestion, which often starts cold after the
editor's window moved; the README shows the measured costs and threshold.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW = 12  # outcomes (and cost samples) per model in the sliding window
DEFAULT_MIN_USED_SHARE = 0.25  # the threshold until the costs are measured
MIN_THRESHOLD = 0.10  # the measured threshold's floor
MAX_THRESHOLD = 0.50  # and its ceiling
MIN_COST_SAMPLES = 3  # guesses and requests measured before the threshold is computed
MIN_OUTCOMES = 4  # fewer outcomes than this: still learning, speculate
PROBE_EVERY_S = 120.0  # seconds between probe guesses while speculation does not pay...
MAX_PROBE_EVERY_S = 960.0  # ...doubling after each wasted probe up to this; a used guess resets it
UNUSED_AFTER_S = 30.0  # seconds after which a completed, unused guess counts as wasted
UNUSED_AFTER_REQUESTS = 3  # requests of its model that passed a completed guess by: wasted
MAX_OPEN = 256  # guesses awaiting their outcome (older ones count as wasted)


@dataclass
class ModelRecord:
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    guess_s: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # model time per guess
    request_s: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # per suggestion run
    last_probe: float = float("-inf")
    probe_every: float = PROBE_EVERY_S
    decision: str = "learning"  # learning | speculate | paused | probe

    @property
    def used_share(self) -> float | None:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else None

    def measured_threshold(self) -> float | None:
        """The break-even used share g / r from the measured costs (None until measured)."""
        if len(self.guess_s) < MIN_COST_SAMPLES or len(self.request_s) < MIN_COST_SAMPLES:
            return None
        g = sum(self.guess_s) / len(self.guess_s)
        r = sum(self.request_s) / len(self.request_s)
        if r <= 0:
            return MAX_THRESHOLD
        return min(MAX_THRESHOLD, max(MIN_THRESHOLD, g / r))


@dataclass
class OpenGuess:
    model: str
    issued_at: float
    completed_at: float | None = None  # None while running
    passed_by: int = 0  # requests of its model served since it completed, not from it


class SpeculationGate:
    """Per-model outcomes of speculative guesses and the decision to guess again."""

    def __init__(self, counters: dict[str, int]) -> None:
        self.models: dict[str, ModelRecord] = {}
        self.open: dict[str, OpenGuess] = {}  # by cache key
        self.counters = counters
        self.unused_after_s = UNUSED_AFTER_S
        self.fixed_threshold: float | None = None  # set: not measured (0: always guess, the bench's contender)
        for k in ("prefetch_used", "prefetch_wasted", "prefetch_skipped"):
            counters.setdefault(k, 0)

    def _record(self, model: str) -> ModelRecord:
        rec = self.models.get(model)
        if rec is None:
            rec = self.models[model] = ModelRecord()
        return rec

    def allow(self, model: str, now: float | None = None) -> bool:
        """Whether to issue a guess for this model now (a probe counts as issued)."""
        t = time.monotonic() if now is None else now
        self.sweep(t)
        rec = self._record(model)
        share = rec.used_share
        if share is not None and len(rec.outcomes) >= MIN_OUTCOMES and share >= self.threshold(model):
            rec.decision = "speculate"
            return True
        if any(g.model == model for g in self.open.values()):
            # not (yet) known to pay: one guess at a time, its outcome first
            rec.decision = "learning" if len(rec.outcomes) < MIN_OUTCOMES else "paused"
            self.counters["prefetch_skipped"] += 1
            return False
        if len(rec.outcomes) < MIN_OUTCOMES:
            rec.decision = "learning"
            return True
        if t - rec.last_probe >= rec.probe_every:
            rec.last_probe = t
            rec.decision = "probe"
            return True
        rec.decision = "paused"
        self.counters["prefetch_skipped"] += 1
        return False

    def threshold(self, model: str) -> float:
        """The used share below which this model's guesses do not pay (see the module doc)."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        measured = self._record(model).measured_threshold()
        return DEFAULT_MIN_USED_SHARE if measured is None else measured

    def cost(self, model: str, seconds: float, guess: bool) -> None:
        """The model time one generation took: a guess's, or a suggestion the user waited for."""
        if seconds > 0:
            rec = self._record(model)
            (rec.guess_s if guess else rec.request_s).append(seconds)

    def served(self, model: str) -> None:
        """A suggestion of this model was served, not from an open guess: a completed guess
        passed over by UNUSED_AFTER_REQUESTS of them is wasted (the typing went elsewhere)."""
        for k, g in list(self.open.items()):
            if g.model == model and g.completed_at is not None:
                g.passed_by += 1
                if g.passed_by >= UNUSED_AFTER_REQUESTS:
                    self._resolve(k, used=False)

    def issued(self, key: str, model: str, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        self.open[key] = OpenGuess(model, t)
        while len(self.open) > MAX_OPEN:
            oldest = next(iter(self.open))
            self._resolve(oldest, used=False)

    def finished(self, key: str, complete: bool, now: float | None = None) -> None:
        """The guess's generation ended; a failed or cancelled one is wasted at once."""
        guess = self.open.get(key)
        if guess is None:
            return
        if complete:
            guess.completed_at = time.monotonic() if now is None else now
        else:
            self._resolve(key, used=False)

    def used(self, key: str) -> bool:
        """A request was answered from this guess (or joined it); True the first time."""
        if key not in self.open:
            return False
        self._resolve(key, used=True)
        return True

    def _resolve(self, key: str, used: bool) -> None:
        guess = self.open.pop(key)
        rec = self._record(guess.model)
        rec.outcomes.append(used)
        if used:
            rec.probe_every = PROBE_EVERY_S
        elif rec.decision == "probe":  # a probe was wasted: ask again later than last time
            rec.probe_every = min(MAX_PROBE_EVERY_S, rec.probe_every * 2)
        self.counters["prefetch_used" if used else "prefetch_wasted"] += 1

    def sweep(self, now: float | None = None) -> None:
        """Count completed guesses nobody used within UNUSED_AFTER_S as wasted."""
        t = time.monotonic() if now is None else now
        stale = [
            k for k, g in self.open.items() if g.completed_at is not None and t - g.completed_at >= self.unused_after_s
        ]
        for k in stale:
            self._resolve(k, used=False)

    def describe(self) -> dict[str, Any]:
        self.sweep()
        return {
            "min_used_share": DEFAULT_MIN_USED_SHARE if self.fixed_threshold is None else self.fixed_threshold,
            "window": WINDOW,
            "open": len(self.open),
            "models": {
                m: {
                    "used_share": None if r.used_share is None else round(r.used_share, 3),
                    "outcomes": len(r.outcomes),
                    "decision": r.decision,
                    "probe_every_s": r.probe_every,
                    "threshold": round(self.threshold(m), 3),
                    "measured": self.fixed_threshold is None and r.measured_threshold() is not None,
                    "guess_s": round(sum(r.guess_s) / len(r.guess_s), 3) if r.guess_s else None,
                    "request_s": round(sum(r.request_s) / len(r.request_s), 3) if r.request_s else None,
                }
                for m, r in self.models.items()
            },
        }
