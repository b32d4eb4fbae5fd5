"""The gateway's routes: Ollama's API, OpenAI's API, and the control API."""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agent import __version__
from agent.errors import BadRequest, PowergateError, StreamBroken, UpstreamError, UpstreamUnavailable
from agent.gateway import lanes, proxy
from agent.gateway.aliases import ModelListing
from agent.gateway.control_api import control_routes
from agent.gateway.guard import ErrorGuard
from agent.gateway.responses import (
    H_UPSTREAM,
    JSON_OLLAMA,
    NO_UPSTREAM,
    error_response,
    powergate_headers,
)
from agent.gateway.security import SecurityMiddleware
from agent.gateway.validate import INFERENCE_KINDS, parse_json_object, validate
from agent.journey.answer import failure
from agent.journey.request import BYPASS, InferenceRequest
from agent.journey.run import Journey
from agent.metrics import MetricsMiddleware
from agent.profiles import Profile
from agent.runtime import Runtime
from agent.services import lightrag_chat
from agent.services.lightrag import unconfigured_routes

log = logging.getLogger(__name__)

ROOT_TEXT = "Ollama is running"  # server/routes.go answers GET / and HEAD / with exactly this
H_SERVED_BY = "X-Powergate"
MODEL_CHANGES = frozenset({"/api/pull", "/api/create", "/api/copy", "/api/delete", "/api/push"})


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.journey = Journey(runtime)

    # ------------------------------------------------------------ helpers
    def _headers(self, cache: str, model: str = "", upstream: str = NO_UPSTREAM) -> dict[str, str]:
        return dict(powergate_headers(cache, model, self.rt.controller.profile.name), **{H_UPSTREAM: upstream})

    def _error(self, path: str, exc: PowergateError, model: str = "", profile: str | None = None) -> Response:
        return failure(path, exc, model, profile or self.rt.controller.profile.name)

    # ------------------------------------------------------------ simple routes
    async def root(self, request: Request) -> Response:
        # The exact bytes Ollama answers: apps compare the whole body to decide Ollama is up.
        # That powergate answered is said in a header instead.
        headers = dict(self._headers(BYPASS), **{H_SERVED_BY: f"powergate/{__version__}"})
        return PlainTextResponse(ROOT_TEXT, headers=headers)

    async def version(self, request: Request) -> Response:
        up = self.rt.upstreams.pick()
        try:
            return await proxy.passthrough(request, up, self._headers(BYPASS, upstream=up.url))
        except UpstreamUnavailable:
            # Clients probe /api/version before anything else; while Ollama is away we still
            # serve cached answers, so say which Ollama version we last saw.
            version = up.health.version or "0.0.0"
            doc = {"version": version, "powergate": __version__}
            return Response(json.dumps(doc).encode(), media_type=JSON_OLLAMA, headers=self._headers(BYPASS))

    async def passthrough(self, request: Request) -> Response:
        path = request.url.path
        if path in INFERENCE_KINDS or path in ("/api/version", "/"):
            return error_response(
                path, f"method {request.method} not allowed on {path}", 405, headers=self._headers(BYPASS)
            )
        up = self.rt.upstreams.pick()
        try:
            response = await proxy.passthrough(request, up, self._headers(BYPASS, upstream=up.url))
        except UpstreamError as exc:
            return self._error(request.url.path, exc)
        if path in MODEL_CHANGES and request.method != "GET":
            # a host's model list changed: learn it once the answer is through, not at the next sample
            response.background = BackgroundTask(self.rt.upstreams.refresh)
        return response

    # ------------------------------------------------------------ inference
    async def inference(self, request: Request) -> Response:
        """Decode the client's dialect at the edge, then the journey answers."""
        profile = self.rt.controller.profile  # this request's profile, fixed until it is answered
        try:
            req = await decode(request, profile)
        except BadRequest as exc:
            return self._error(request.url.path, exc, profile=profile.name)
        if req.requested == lightrag_chat.MODEL:  # another room answers it: LightRAG's front
            return await lightrag_chat.respond(request, self.rt.lightrag, req.path, req.body, profile)
        return await self.journey.run(req)


async def decode(request: Request, profile: Profile) -> InferenceRequest:
    """The one request shape, from either dialect (raises BadRequest in the caller's terms)."""
    path = request.url.path
    body = parse_json_object(await request.body())
    requested = validate(path, body)
    cc = request.headers.get("cache-control", "").lower()
    return InferenceRequest(
        http=request,
        path=path,
        body=body,
        requested=requested,
        profile=profile,
        no_read="no-cache" in cc,
        no_store="no-store" in cc,
        forward=proxy.forward_headers(request),
    )


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
        *(runtime.lightrag.routes() if runtime.lightrag is not None else unconfigured_routes()),
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
        if isinstance(exc, StreamBroken):  # mid-answer: nothing can be sent; the guard aborts
            return Response(status_code=502)
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
    return ErrorGuard(lanes.LaneMiddleware(secured))  # type: ignore[return-value]
