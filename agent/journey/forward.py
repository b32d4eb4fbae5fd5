"""A request the cache must not see: straight to an upstream and back, through its scheduler.

Streams are relayed chunk by chunk and hold the slot until they end. A host that
fails before its answer began (refused, reset, 503 busy) is replaced once by the
next host of the request's route.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from agent.errors import ModelNotFound, UpstreamError
from agent.gateway import proxy
from agent.gateway.responses import H_CACHE, H_PROFILE, H_UPSTREAM, json_media
from agent.journey.answer import failure, serve_flight
from agent.journey.dispatch import pause_state, record_upstream, upstream_headers
from agent.journey.request import BYPASS, InferenceRequest
from agent.metrics import parse_final
from agent.upstreams.base import Reply, Upstream
from agent.upstreams.pool import retryable

if TYPE_CHECKING:
    from agent.runtime import Runtime

log = logging.getLogger(__name__)


def releaser(slot: AbstractAsyncContextManager[Any]) -> Callable[[bool], Awaitable[None]]:
    async def release(ok: bool) -> None:
        await slot.__aexit__(None, None, None)

    return release


async def forward(req: InferenceRequest, rt: Runtime) -> Response:
    path, headers = req.path, req.headers
    headers[H_CACHE] = BYPASS
    try:
        route = rt.upstreams.route(req.model)
    except ModelNotFound as exc:
        return failure(path, exc, req.model, headers[H_PROFILE])
    pause = pause_state(route.first.kind, req, req.body)
    if pause is not None:
        # A stream that may be paused for a suggestion: a flight nobody else joins and
        # nothing is stored from, so pausing, resuming and stitching (and the host
        # failover) live in one place.
        flight = rt.flights.start(
            "",
            req.api,
            req.model,
            route,
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
    upstream: Upstream | None = route.first
    while upstream is not None:
        up = upstream
        slot = up.scheduler.slot(req.priority)
        try:
            ticket = await proxy.until_done(req.http, slot.__aenter__())
        except proxy.ClientGone:
            return Response(status_code=499)
        except UpstreamError as exc:
            return failure(path, exc, req.model, headers[H_PROFILE])
        route.attempt(up)
        held = True
        resp: Reply | None = None
        error: UpstreamError | None = None
        try:
            started = time.perf_counter()
            resp = await proxy.until_done(req.http, up.infer(path, req.body, fwd, stream=req.stream))
            elapsed = time.perf_counter() - started
            if req.stream and resp.status_code == 200:
                held = False  # from here the stream holds the slot until it ends

                route.answered(up)
                headers[H_UPSTREAM] = up.url
                return proxy.stream_response(path, proxy.relay_chunks(resp, on_end=releaser(slot)), headers)
            content = await resp.aread() if req.stream else resp.content
            if req.stream:
                await resp.aclose()
        except proxy.ClientGone:
            log.debug("client left before %s was answered; upstream request closed", path)
            return Response(status_code=499)
        except UpstreamError as exc:
            error = exc
        finally:
            if held:
                await slot.__aexit__(None, None, None)
        status = resp.status_code if resp is not None and error is None else None
        if retryable(error, status):
            route.failed(up, error, status)
            upstream = route.next_after(up)
            if upstream is not None:
                log.info("%s failed before answering (%s); trying %s", up.url, error or status, upstream.url)
                continue
            if error is not None:
                return failure(path, error, req.model, headers[H_PROFILE])
        elif error is not None:
            return failure(path, error, req.model, headers[H_PROFILE])
        assert resp is not None
        headers[H_UPSTREAM] = up.url
        if resp.status_code != 200:
            return proxy.upstream_error(path, resp.status_code, content, headers)
        route.answered(up)
        if not req.openai:
            doc = parse_final(content)
            if doc is not None:
                rt.metrics.record_upstream(doc, elapsed, ticket.waited)
                rt.upstreams.record_answer(up.url, req.model, doc, ticket.waited)
        return Response(content, status_code=200, media_type=json_media(path), headers=headers)
    return failure(path, UpstreamError("no model host could answer"), req.model, headers[H_PROFILE])
