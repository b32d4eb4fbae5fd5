"""The gateway's routes: Ollama's API, OpenAI's API, and the control API."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from agent import __version__
from agent.cache import typeahead
from agent.cache.answers import (
    assemble,
    completion_text,
    is_sse,
    restamp_all,
    stream_events,
    synth_completion,
    whole_to_chunks,
)
from agent.cache.base import Entry
from agent.cache.keys import API_BY_PATH, COMPLETION_APIS, answer_fields, cacheable, request_key
from agent.errors import BadRequest, PowergateError, UpstreamBusy, UpstreamError, UpstreamUnavailable
from agent.gateway import proxy
from agent.gateway.aliases import ModelListing
from agent.gateway.control_api import control_routes
from agent.gateway.embeddings import EmbeddingService
from agent.gateway.flights import Flight
from agent.gateway.responses import (
    H_CACHE,
    H_PROFILE,
    JSON_OLLAMA,
    JSON_OPENAI,
    NDJSON,
    SSE,
    error_response,
    json_media,
    json_response,
    powergate_headers,
)
from agent.gateway.security import SecurityMiddleware
from agent.gateway.validate import INFERENCE_KINDS, parse_json_object, validate
from agent.metrics import MetricsMiddleware, parse_final
from agent.prefetch import is_fim
from agent.profiles import Profile
from agent.routing import route
from agent.runtime import Runtime
from agent.scheduling import priority_for

log = logging.getLogger(__name__)

BYPASS = "bypass"
ROOT_TEXT = "Ollama is running"  # server/routes.go answers GET / and HEAD / with exactly this
H_SERVED_BY = "X-Powergate"
MISS = "miss"
TYPEAHEAD = "typeahead"
COALESCED = "coalesced"


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.embeddings = EmbeddingService(runtime, self._error)

    # ------------------------------------------------------------ helpers
    def _headers(self, cache: str, model: str = "") -> dict[str, str]:
        return powergate_headers(cache, model, self.rt.controller.profile.name)

    def _error(self, path: str, exc: PowergateError, model: str = "", profile: str | None = None) -> Response:
        # No model produced an error answer: X-Powergate-Model says "none" (the model that was
        # meant to answer is named in the message where it matters).
        headers = powergate_headers(BYPASS, "", profile or self.rt.controller.profile.name)
        status = getattr(exc, "status_code", 502)
        if isinstance(exc, UpstreamBusy):
            headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        param = exc.param if isinstance(exc, BadRequest) else None
        return error_response(path, str(exc), status, param=param, headers=headers)

    # ------------------------------------------------------------ simple routes
    async def root(self, request: Request) -> Response:
        # The exact bytes Ollama answers: apps compare the whole body to decide Ollama is up.
        # That powergate answered is said in a header instead.
        headers = dict(self._headers(BYPASS), **{H_SERVED_BY: f"powergate/{__version__}"})
        return PlainTextResponse(ROOT_TEXT, headers=headers)

    async def version(self, request: Request) -> Response:
        up = self.rt.upstreams.pick()
        try:
            return await proxy.passthrough(request, up, self._headers(BYPASS))
        except UpstreamUnavailable:
            # Clients probe /api/version before anything else; while Ollama is away we still
            # serve cached answers, so say which Ollama version we last saw.
            version = up.health.version or "0.0.0"
            return json_response({"version": version, "powergate": __version__}, headers=self._headers(BYPASS))

    async def passthrough(self, request: Request) -> Response:
        path = request.url.path
        if path in INFERENCE_KINDS or path in ("/api/version", "/"):
            return error_response(
                path, f"method {request.method} not allowed on {path}", 405, headers=self._headers(BYPASS)
            )
        try:
            return await proxy.passthrough(request, self.rt.upstreams.pick(), self._headers(BYPASS))
        except UpstreamError as exc:
            return self._error(request.url.path, exc)

    # ------------------------------------------------------------ inference
    async def inference(self, request: Request) -> Response:
        path = request.url.path
        profile = self.rt.controller.profile  # this request's profile, fixed until it is answered
        try:
            body = parse_json_object(await request.body())
            requested = validate(path, body)
        except BadRequest as exc:
            return self._error(path, exc, profile=profile.name)
        kind = INFERENCE_KINDS[path]
        openai = path.startswith("/v1/")
        decision = route(requested, kind, body, profile, self.rt.settings.models)
        body["model"] = decision.model
        if decision.reason == "cap":
            self.rt.capped += 1
        ctx = await self.rt.normalise_runner(body, profile, kind) if not openai else None
        cc = request.headers.get("cache-control", "").lower()
        no_read, no_store = "no-cache" in cc, "no-store" in cc
        self.rt.prefetcher.touch(profile)
        if kind in ("embed", "embeddings"):
            return await self.embeddings.handle(request, path, body, profile, no_read, no_store)

        stream = body.get("stream")
        if stream is None:
            stream = not openai
        api = API_BY_PATH[path]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if openai else True
        headers = powergate_headers(MISS, decision.model, profile.name)
        if ctx is not None:
            headers.update(ctx.header())  # a profile's num_ctx_max shrank the client's context
        cache = self.rt.cache
        use_cache = (
            not self.rt.controller.cache_paused
            and cacheable(api, body, self.rt.settings.cache.chat)
            and not (no_read and no_store)
        )
        if not use_cache:
            headers[H_CACHE] = BYPASS
            return await self._forward(request, path, body, stream, headers, priority_for(decision.job, kind))

        key = request_key(api, decision.model, body)
        probe = typeahead.probe_for(api, decision.model, body, answer_fields(body)) if api in COMPLETION_APIS else None
        flight = None
        if not no_read:
            entry, outcome = await cache.lookup(key)
            if entry is not None:
                self.rt.prefetcher.used(entry.meta)
                if probe is not None:
                    cache.typeahead.add(probe, completion_text(api, entry.chunks), key)
                    self._prefetch_next(request, entry.chunks, decision.model, body, api, path, profile)
                headers[H_CACHE] = outcome
                return replay(entry, api, stream, include_usage, headers)
            if probe is not None:
                found = cache.typeahead.lookup(probe)
                if found is not None:
                    rest, rec = found
                    source = cache.lookup_memory(rec.entry_key)
                    if source is not None:
                        synth = Entry(api, decision.model, synth_completion(api, decision.model, rest, source.chunks))
                        self.rt.prefetcher.used(source.meta)
                        self._prefetch_next(request, synth.chunks, decision.model, body, api, path, profile)
                        headers[H_CACHE] = TYPEAHEAD
                        return replay(synth, api, stream, include_usage, headers)
            flight = self.rt.flights.get(key)
            if flight is not None:
                headers[H_CACHE] = COALESCED
                self.rt.prefetcher.promoted(flight)
                flight.followers += 1
                cache.coalesced += 1
        if flight is None:
            # Upstream in the client's mode: a whole answer costs Ollama and us less to
            # transfer; either form is stored and replayed in both forms.
            up_body = dict(body, stream=bool(stream))
            if openai and stream:
                up_body["stream_options"] = {"include_usage": True}
            payload = json.dumps(up_body, separators=(",", ":")).encode()
            fwd = proxy.forward_headers(request)
            fwd["content-type"] = "application/json"
            client, prefix = self._client_and_prefix(request, probe)
            flight = self.rt.flights.start(
                key,
                api,
                decision.model,
                self.rt.upstreams.pick(),
                path,
                payload,
                fwd,
                register=not no_read,
                whole=not stream,
                priority=priority_for(decision.job, kind),
                client=client,
                prefix=prefix,
            )
            flight.on_finished = self._record_upstream
            if not no_store:
                flight.on_complete = lambda f: self._store(f, probe)
            # once answered, guess the next completion (speculative profiles, FIM requests)
            flight.on_done = lambda f: (
                self._prefetch_next(request, f.chunks, f.model, body, api, path, profile) if f.complete else None
            )
        return await self._serve_flight(request, path, flight, stream, include_usage, headers)

    def _prefetch_next(
        self,
        request: Request,
        chunks: list[bytes],
        model: str,
        body: dict[str, Any],
        api: str,
        path: str,
        profile: Profile,
    ) -> None:
        # FIM completions only: that is how editors ask for suggestions
        if api in COMPLETION_APIS and is_fim(body):  # the prefetcher decides by the profile
            fwd = proxy.forward_headers(request)
            fwd["content-type"] = "application/json"
            self.rt.prefetcher.after_completion(chunks, model, body, api, path, fwd, profile)

    @staticmethod
    def _client_and_prefix(request: Request, probe: typeahead.Probe | None) -> tuple[str, str]:
        """Who is typing (for superseding their older completions) and what they typed so far."""
        if probe is None:
            return "", ""
        host = request.client.host if request.client else ""
        return f"{host}|{request.headers.get('user-agent', '')}|{probe.family}", probe.prefix

    def _record_upstream(self, flight: Flight) -> None:
        doc = parse_final(flight.chunks[-1]) if flight.chunks else None
        if doc is not None and not is_sse(flight.api):
            self.rt.metrics.record_upstream(doc, flight.wall_s, flight.queued)

    def _store(self, flight: Flight, probe: typeahead.Probe | None) -> None:
        entry = Entry(flight.api, flight.model, list(flight.chunks), meta={"form": "whole"} if flight.whole else {})
        self.rt.cache.store(flight.key, entry)
        if probe is not None:
            self.rt.cache.typeahead.add(probe, completion_text(flight.api, entry.chunks), flight.key)

    async def _serve_flight(
        self, request: Request, path: str, flight: Flight, stream: bool, include_usage: bool, headers: dict[str, str]
    ) -> Response:
        flight.join()
        try:
            if stream and not flight.whole:
                await proxy.until_done(request, flight.started())
                if flight.synthesized:  # answered from a newer request that extends this prompt
                    headers[H_CACHE] = TYPEAHEAD
                if flight.error_exc is None and flight.status == 200:
                    return proxy.stream_response(path, flight.stream(include_usage), headers)
            else:
                await proxy.until_done(request, flight.finished())
        except proxy.ClientGone:
            flight.leave()
            log.debug("client left before %s was answered", path)
            return Response(status_code=499)
        flight.leave()
        if flight.synthesized:
            headers[H_CACHE] = TYPEAHEAD
        if flight.error_exc is not None:
            return self._error(path, flight.error_exc, flight.model, headers[H_PROFILE])
        if flight.status != 200:
            headers[H_CACHE] = BYPASS
            return proxy.upstream_error(path, flight.status or 502, flight.error_body, headers)
        if not flight.complete:
            message = stream_error(flight.chunks) or "Ollama ended the answer before it was complete"
            return error_response(path, message, 502, headers=headers)
        if flight.whole or stream:
            form = {"form": "whole"} if flight.whole else {}
            return replay(
                Entry(flight.api, flight.model, flight.chunks, meta=form), flight.api, stream, include_usage, headers
            )
        return Response(assemble(flight.api, flight.chunks), media_type=json_media(path), headers=headers)

    async def _forward(
        self, request: Request, path: str, body: dict[str, Any], stream: bool, headers: dict[str, str], priority: int
    ) -> Response:
        """Uncached: straight to Ollama and back (through the scheduler), streams chunk by chunk."""
        upstream = self.rt.upstreams.pick()
        payload = json.dumps(body, separators=(",", ":")).encode()
        fwd = proxy.forward_headers(request)
        fwd["content-type"] = "application/json"
        slot = upstream.scheduler.slot(priority)
        try:
            ticket = await proxy.until_done(request, slot.__aenter__())
        except proxy.ClientGone:
            return Response(status_code=499)
        except UpstreamError as exc:
            return self._error(path, exc, body.get("model", ""), headers[H_PROFILE])
        held = True
        try:
            if stream:
                resp = await proxy.until_done(request, proxy.open_stream(upstream, path, payload, fwd))
                if resp.status_code != 200:
                    err = await resp.aread()
                    await resp.aclose()
                    return proxy.upstream_error(path, resp.status_code, err, headers)
                held = False  # from here the stream holds the slot until it ends

                async def release(ok: bool) -> None:
                    await slot.__aexit__(None, None, None)

                relay = proxy.relay_chunks(resp, on_end=release)
                return proxy.stream_response(path, relay, headers)
            resp = await proxy.until_done(request, upstream.send("POST", path, content=payload, headers=fwd))
        except proxy.ClientGone:
            log.debug("client left before %s was answered; upstream request closed", path)
            return Response(status_code=499)
        except UpstreamError as exc:
            return self._error(path, exc, body.get("model", ""), headers[H_PROFILE])
        finally:
            if held:
                await slot.__aexit__(None, None, None)
        if resp.status_code != 200:
            return proxy.upstream_error(path, resp.status_code, resp.content, headers)
        if not path.startswith("/v1/"):
            doc = parse_final(resp.content)
            if doc is not None:
                self.rt.metrics.record_upstream(doc, resp.elapsed.total_seconds(), ticket.waited)
        return Response(resp.content, status_code=200, media_type=json_media(path), headers=headers)


def replay(entry: Entry, api: str, stream: bool, include_usage: bool, headers: dict[str, str]) -> Response:
    """A stored answer as the client asked for it, stamped with the time it is served:
    streamed one NDJSON line / SSE event per write (like Ollama), or whole."""
    whole = entry.meta.get("form") == "whole"
    whole_media = JSON_OPENAI if is_sse(api) else JSON_OLLAMA
    if stream:
        rk = "s1" if include_usage else "s0"
        events = entry._replay.get(rk)
        if events is None:
            chunks = whole_to_chunks(api, entry.chunks[0]) if whole else entry.chunks
            events = entry._replay[rk] = stream_events(api, chunks, include_usage)
        return StreamingResponse(
            _aiter(restamp_all(events)), media_type=SSE if is_sse(api) else NDJSON, headers=headers
        )
    if whole:
        return Response(restamp_all(entry.chunks[:1])[0], media_type=whole_media, headers=headers)
    content = entry._replay.get("w")
    if content is None:
        content = entry._replay["w"] = assemble(api, entry.chunks)
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


def build_app(runtime: Runtime) -> Starlette:
    gw = Gateway(runtime)
    listing = ModelListing(runtime)
    routes = [
        Route("/", gw.root, methods=["GET", "HEAD"]),
        Route("/api/version", gw.version, methods=["GET", "HEAD"]),
        # the aliases are models to a client: listed and shown (agent/gateway/aliases.py)
        Route("/api/tags", listing.tags, methods=["GET", "HEAD"]),
        Route("/api/show", listing.show, methods=["POST"]),
        Route("/v1/models", listing.v1_models, methods=["GET"]),
        Route("/v1/models/{model:path}", listing.v1_model, methods=["GET"]),
        *[Route(p, gw.inference, methods=["POST"]) for p in INFERENCE_KINDS],
        *control_routes(runtime),
        Route("/api/{rest:path}", gw.passthrough, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(request.url.path, f"{request.url.path} not found", 404, headers=gw._headers(BYPASS))

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(
            request.url.path,
            f"method {request.method} not allowed on {request.url.path}",
            405,
            headers=gw._headers(BYPASS),
        )

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return error_response(
            request.url.path, f"internal error in powergate: {type(exc).__name__}", 500, headers=gw._headers(BYPASS)
        )

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, Exception: crashed},
    )
    app.state.runtime = runtime
    server = runtime.settings.server
    measured = MetricsMiddleware(app, runtime.metrics)
    secured = SecurityMiddleware(
        measured,
        max_body_bytes=int(server.max_body_mb * 1024 * 1024),
        check_host=server.is_loopback,
        allowed_origins=server.allowed_origins,
    )
    return secured  # type: ignore[return-value]
