"""Each host's circuit breaker, and the background check that also learns what it has.

A host is in one of four states:

- `unknown`: not checked yet; it may serve (the first request after start must not
  be refused because the first check has not run);
- `up`: its last check or request worked;
- `resting` until T: it failed (a refused connection at once; timeouts and resets
  after FAILURES_TO_REST in a row; a failed background check at once). No request
  and no check goes to it before T;
- `probing`: its rest is over and the background check is asking it now. Success
  makes it `up`, failure sends it back to rest for twice as long (at most REST_MAX_S).

Checks run in the background only, at the profile's sampling interval (the
runtime calls `refresh` from its power sample), never on the request path; the
first rest lasts one such interval, so a dead host costs a laptop on battery no
more polling than the profile allows. The same check refreshes the host's model
list and what it holds in memory, which the pool needs to choose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from agent.errors import UpstreamError

log = logging.getLogger(__name__)

FAILURES_TO_REST = 3  # timeouts or resets in a row before a host rests (a refused connection: at once)
DEFAULT_REST_S = 5.0  # seconds of the first rest when no sampling interval is known
REST_MAX_S = 300.0  # seconds: the longest rest, however often a host failed


class HostState(str, Enum):
    UNKNOWN = "unknown"
    UP = "up"
    RESTING = "resting"
    PROBING = "probing"


@dataclass
class Breaker:
    """The circuit breaker of one host. Times are `time.time()` seconds."""

    rest_s: float = DEFAULT_REST_S  # the first rest; doubles for each failed probe in a row
    state: HostState = HostState.UNKNOWN
    failures: int = 0  # soft failures in a row
    trips: int = 0  # rests in a row without a success between them
    rest_until: float = 0.0
    error: str = ""
    changed_at: float = field(default_factory=time.time)

    def serves(self, now: float | None = None) -> bool:
        """May a request go there (resting and probing hosts are left alone)?"""
        return self.state in (HostState.UP, HostState.UNKNOWN)

    def rest_over(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.state is HostState.RESTING and now >= self.rest_until

    def _set(self, state: HostState, now: float) -> None:
        if state is not self.state:
            self.state = state
            self.changed_at = now

    def failed(self, error: str, *, hard: bool, now: float | None = None) -> bool:
        """Count a failure; True when the host starts resting now."""
        now = time.time() if now is None else now
        self.error = error
        if self.state is HostState.RESTING:
            return False
        self.failures += 1
        if not hard and self.failures < FAILURES_TO_REST and self.state is not HostState.PROBING:
            return False
        self.trips += 1
        rest = min(REST_MAX_S, self.rest_s * 2 ** (self.trips - 1))
        self.rest_until = now + rest
        self.failures = 0
        self._set(HostState.RESTING, now)
        return True

    def succeeded(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.failures = 0
        self.trips = 0
        self.error = ""
        self._set(HostState.UP, now)

    def start_probe(self, now: float | None = None) -> None:
        self._set(HostState.PROBING, time.time() if now is None else now)

    def describe(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        resting = self.state is HostState.RESTING
        return {
            "state": self.state.value,
            "resting_until": self.rest_until if resting else None,
            "resting_for_s": round(max(0.0, self.rest_until - now), 3) if resting else None,
            "failures": self.failures,
            "trips": self.trips,
            "error": self.error,
            "since": self.changed_at,
        }


class HostProbe(Protocol):
    """What a background check asks a host; each backend kind answers from its own API."""

    async def check(self) -> str:
        """The server's version (raises UpstreamError when it does not answer)."""
        ...

    async def list_models(self) -> Mapping[str, float | None] | None:
        """Model name -> size in MB (None for a size the server does not say); None when
        this kind of server cannot list its models (then it may have any)."""
        ...

    async def loaded_models(self) -> frozenset[str] | None:
        """The models in its memory now; None when the server cannot tell."""
        ...


@dataclass
class HostInfo:
    """What the last good background check learnt about a host."""

    version: str = ""
    models: dict[str, float | None] | None = None  # None: not listed yet
    loaded: frozenset[str] | None = None
    refreshed_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "models": None if self.models is None else sorted(self.models),
            "loaded": None if self.loaded is None else sorted(self.loaded),
            "refreshed_at": self.refreshed_at or None,
        }


async def refresh(probe: HostProbe, breaker: Breaker, info: HostInfo, now: float | None = None) -> bool:
    """One background check of one host; False when the host is resting or failed it."""
    now = time.time() if now is None else now
    if breaker.state is HostState.RESTING:
        if not breaker.rest_over(now):
            return False  # a resting host is not asked anything before its rest is over
        breaker.start_probe(now)
    try:
        info.version = await probe.check()
        models = await probe.list_models()
        info.models = None if models is None else dict(models)
        info.loaded = await probe.loaded_models()
    except UpstreamError as exc:
        if breaker.failed(str(exc), hard=True, now=now):
            # the backend already warned that it is unreachable; this only says for how long we wait
            log.info("model host %s rests for %.1f s", exc.url, breaker.rest_until - now)
        return False
    info.refreshed_at = now
    breaker.succeeded(now)
    return True
