"""Stage 1: which model serves the request, at which priority, with which runner options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.gateway import lanes
from agent.gateway.responses import powergate_headers
from agent.journey.request import MISS, InferenceRequest
from agent.routing import route
from agent.upstreams.scheduling import priority_for

if TYPE_CHECKING:
    from agent.runtime import Runtime


async def route_request(req: InferenceRequest, rt: Runtime) -> None:
    """Resolve aliases and caps into a concrete model; a cold editor warms the autocomplete model."""
    decision = route(req.requested, req.kind, req.body, req.profile, rt.settings.models)
    req.model = req.body["model"] = decision.model
    req.job = decision.job
    req.priority = lanes.priority(req.http, priority_for(decision.job, req.kind))
    if decision.reason == "cap":
        rt.capped += 1
    ctx = await rt.normalise_runner(req.body, req.profile, req.kind) if not req.openai else None
    req.headers = powergate_headers(MISS, decision.model, req.profile.name)
    if ctx is not None:
        req.headers.update(ctx.header())  # a profile's num_ctx_max shrank the client's context
    rt.prefetcher.touch(req.profile)
