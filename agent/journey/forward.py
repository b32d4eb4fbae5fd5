"""A request the cache must not see: straight to an upstream and back, through its scheduler.

Streams are relayed chunk by chunk and hold the slot until they end.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.responses import Response

from agent.errors import UpstreamError
from agent.gateway import proxy
from agent.gateway.responses import H_CACHE, H_PROFILE, json_media
from agent.journey.answer import failure, serve_flight
from agent.journey.dispatch import pause_state, record_upstream, upstream_headers
from agent.journey.request import BYPASS, InferenceRequest
from agent.metrics import parse_final

if TYPE_CHECKING:
    from agent.runtime import Runtime

log = logging.getLogger(__name__)


async def forward(req: InferenceRequest, rt: Runtime) -> Response:
    path, headers = req.path, req.headers
    headers[H_CACHE] = BYPASS
    upstream = rt.upstreams.pick()
    pause = pause_state(upstream.kind, req, req.body)
    if pause is not None:
        # A stream that may be paused for a suggestion: a flight nobody else joins and
        # nothing is stored from, so pausing, resuming and stitching live in one place.
        flight = rt.flights.start(
            "",
            req.api,
            req.model,
            upstream,
            path,
            req.body,
            upstream_headers(req),
            register=False,
            priority=req.priority,
            pause=pause,
        )
        flight.on_finished = lambda f: record_upstream(rt, f)
        return await serve_flight(req, flight)
    fwd = upstream_headers(req)
    slot = upstream.scheduler.slot(req.priority)
    try:
        ticket = await proxy.until_done(req.http, slot.__aenter__())
    except proxy.ClientGone:
        return Response(status_code=499)
    except UpstreamError as exc:
        return failure(path, exc, req.model, headers[H_PROFILE])
    held = True
    try:
        if req.stream:
            resp = await proxy.until_done(req.http, upstream.infer(path, req.body, fwd, stream=True))
            if resp.status_code != 200:
                err = await resp.aread()
                await resp.aclose()
                return proxy.upstream_error(path, resp.status_code, err, headers)
            held = False  # from here the stream holds the slot until it ends

            async def release(ok: bool) -> None:
                await slot.__aexit__(None, None, None)

            relay = proxy.relay_chunks(resp, on_end=release)
            return proxy.stream_response(path, relay, headers)
        started = time.perf_counter()
        resp = await proxy.until_done(req.http, upstream.infer(path, req.body, fwd, stream=False))
        elapsed = time.perf_counter() - started
    except proxy.ClientGone:
        log.debug("client left before %s was answered; upstream request closed", path)
        return Response(status_code=499)
    except UpstreamError as exc:
        return failure(path, exc, req.model, headers[H_PROFILE])
    finally:
        if held:
            await slot.__aexit__(None, None, None)
    if resp.status_code != 200:
        return proxy.upstream_error(path, resp.status_code, resp.content, headers)
    if not req.openai:
        doc = parse_final(resp.content)
        if doc is not None:
            rt.metrics.record_upstream(doc, elapsed, ticket.waited)
    return Response(resp.content, status_code=200, media_type=json_media(path), headers=headers)
