"""The last stage: the answer in the form the client asked for (stream or whole, its dialect).

Stored answers, typeahead continuations and live flights all leave through here,
so the forms are built in one place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from agent.cache.answers import assemble, is_sse, restamp_all, split_events, stream_bytes, whole_to_chunks
from agent.cache.base import Entry
from agent.errors import BadRequest, PowergateError, UpstreamBusy
from agent.gateway import proxy
from agent.gateway.responses import (
    H_CACHE,
    H_PROFILE,
    H_UPSTREAM,
    JSON_OLLAMA,
    JSON_OPENAI,
    NDJSON,
    NO_UPSTREAM,
    SSE,
    error_response,
    json_media,
    powergate_headers,
)
from agent.journey.flights import Flight
from agent.journey.request import BYPASS, TYPEAHEAD, InferenceRequest

log = logging.getLogger(__name__)

DEFAULT_ERROR_STATUS = 502


def failure(path: str, exc: PowergateError, model: str, profile: str, upstream: str = NO_UPSTREAM) -> Response:
    """A powergate error in the client's API format, with its status (and Retry-After when busy).

    No model produced it: X-Powergate-Model says "none" (the message names the model where
    it matters)."""
    headers = powergate_headers(BYPASS, "", profile)
    headers[H_UPSTREAM] = upstream
    status = getattr(exc, "status_code", DEFAULT_ERROR_STATUS)
    if isinstance(exc, UpstreamBusy):
        headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    param = exc.param if isinstance(exc, BadRequest) else None
    return error_response(path, str(exc), status, param=param, headers=headers)


def replay(entry: Entry, api: str, stream: bool, include_usage: bool, headers: dict[str, str]) -> Response:
    """A stored answer as the client asked for it, stamped with the time it is served:
    streamed one NDJSON line / SSE event per write (like Ollama), or whole."""
    whole = entry.meta.get("form") == "whole"
    whole_media = JSON_OPENAI if is_sse(api) else JSON_OLLAMA
    if stream:
        rk = "s1" if include_usage else "s0"
        content = entry.replay_form(rk)
        if content is None:
            chunks = whole_to_chunks(api, entry.chunks[0]) if whole else entry.chunks
            content = stream_bytes(api, chunks, include_usage)
            entry.remember_form(rk, content)
        return StreamingResponse(
            _aiter(restamp_all(split_events(api, content))), media_type=SSE if is_sse(api) else NDJSON, headers=headers
        )
    if whole:
        return Response(restamp_all(entry.chunks[:1])[0], media_type=whole_media, headers=headers)
    content = entry.replay_form("w")
    if content is None:
        content = assemble(api, entry.chunks)
        entry.remember_form("w", content)
    return Response(restamp_all([content])[0], media_type=whole_media, headers=headers)


async def _aiter(events: list[bytes]) -> AsyncIterator[bytes]:
    for e in events:
        yield e


def stream_error(chunks: list[bytes]) -> str:
    if chunks:
        try:
            doc = json.loads(chunks[-1])
        except ValueError:
            return ""
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            return str(err.get("message", ""))
        if err:
            return str(err)
    return ""


async def serve_flight(req: InferenceRequest, flight: Flight) -> Response:
    """Follow a flight (our own or one we joined) and answer from it."""
    path, stream, headers = req.path, req.stream, req.headers
    flight.join()
    try:
        if stream and not flight.whole:
            await proxy.until_done(req.http, flight.started())
            if flight.synthesized:  # answered from a newer request that extends this prompt
                headers[H_CACHE] = TYPEAHEAD
            if flight.error_exc is None and flight.status == 200:
                headers[H_UPSTREAM] = flight.upstream_url or NO_UPSTREAM
                return proxy.stream_response(path, flight.stream(req.include_usage), headers)
        else:
            await proxy.until_done(req.http, flight.finished())
    except proxy.ClientGone:
        flight.leave()
        log.debug("client left before %s was answered", path)
        return Response(status_code=499)
    flight.leave()
    headers[H_UPSTREAM] = flight.upstream_url or NO_UPSTREAM
    if flight.synthesized:
        headers[H_CACHE] = TYPEAHEAD
    if flight.error_exc is not None:
        return failure(path, flight.error_exc, flight.model, headers[H_PROFILE])
    if flight.status != 200:
        headers[H_CACHE] = BYPASS
        return proxy.upstream_error(path, flight.status or DEFAULT_ERROR_STATUS, flight.error_body, headers)
    if not flight.complete:
        message = stream_error(flight.chunks) or "Ollama ended the answer before it was complete"
        return error_response(path, message, DEFAULT_ERROR_STATUS, headers=headers)
    if flight.whole or stream:
        form = {"form": "whole"} if flight.whole else {}
        entry = Entry(flight.api, flight.model, flight.chunks, meta=form)
        return replay(entry, flight.api, stream, req.include_usage, headers)
    return Response(assemble(flight.api, flight.chunks), media_type=json_media(path), headers=headers)
