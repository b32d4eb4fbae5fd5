"""Stage 3: the same request is already being answered upstream: share that call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.gateway.responses import H_CACHE
from agent.journey.flights import Flight
from agent.journey.lookup import CachePlan
from agent.journey.request import COALESCED, InferenceRequest

if TYPE_CHECKING:
    from agent.runtime import Runtime


def join(req: InferenceRequest, rt: Runtime, cp: CachePlan) -> Flight | None:
    """The flight in the air for this cache key (a prefetch is promoted to foreground), or None."""
    if req.no_read:
        return None  # no-cache: the client wants a fresh answer, not someone else's
    flight = rt.flights.get(cp.key)
    if flight is None and cp.probe is not None:
        # the prefetch of this position, asked with the window's older start
        flight = rt.flights.find_guess(cp.probe.family, cp.probe.prefix)
    if flight is None:
        return None
    req.headers[H_CACHE] = COALESCED
    rt.prefetcher.promoted(flight)
    flight.followers += 1
    rt.cache.coalesced += 1
    return flight
