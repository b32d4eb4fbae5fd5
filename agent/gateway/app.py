"""The gateway's routes: Ollama's API, OpenAI's API, and the control API."""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agent import __version__
from agent.errors import BadRequest, PowergateError, UpstreamBusy, UpstreamError, UpstreamUnavailable
from agent.gateway import proxy
from agent.gateway.control_api import control_routes
from agent.gateway.responses import H_CACHE, error_response, json_response, powergate_headers
from agent.gateway.security import SecurityMiddleware
from agent.gateway.validate import INFERENCE_KINDS, parse_json_object, validate
from agent.routing import route
from agent.runtime import Runtime

log = logging.getLogger(__name__)

BYPASS = "bypass"
MISS = "miss"


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # ------------------------------------------------------------ helpers
    def _headers(self, cache: str, model: str = "") -> dict[str, str]:
        return powergate_headers(cache, model, self.rt.controller.profile.name)

    def _error(self, path: str, exc: PowergateError, model: str = "", profile: str | None = None) -> Response:
        headers = powergate_headers(BYPASS, model, profile or self.rt.controller.profile.name)
        status = getattr(exc, "status_code", 502)
        if isinstance(exc, UpstreamBusy):
            headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        param = exc.param if isinstance(exc, BadRequest) else None
        return error_response(path, str(exc), status, param=param, headers=headers)

    # ------------------------------------------------------------ simple routes
    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running (via powergate)", headers=self._headers(BYPASS))

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
        if not openai and "keep_alive" not in body:
            body["keep_alive"] = profile.keep_alive
        stream = body.get("stream")
        if stream is None:
            stream = not openai and kind in ("generate", "chat")
        headers = powergate_headers(MISS, decision.model, profile.name)
        upstream = self.rt.upstreams.pick()
        payload = json.dumps(body, separators=(",", ":")).encode()
        fwd = proxy.forward_headers(request)
        fwd["content-type"] = "application/json"
        try:
            if stream and kind in ("generate", "chat"):
                resp = await proxy.until_done(request, proxy.open_stream(upstream, path, payload, fwd))
                if resp.status_code != 200:
                    err = await resp.aread()
                    await resp.aclose()
                    headers[H_CACHE] = BYPASS
                    return proxy.upstream_error(path, resp, err, headers)
                return proxy.stream_response(path, proxy.relay_chunks(resp), headers)
            resp = await proxy.until_done(request, upstream.send("POST", path, content=payload, headers=fwd))
        except proxy.ClientGone:
            log.debug("client left before %s was answered; upstream request closed", path)
            return Response(status_code=499)
        except UpstreamError as exc:
            return self._error(path, exc, decision.model, profile.name)
        if resp.status_code != 200:
            headers[H_CACHE] = BYPASS
            return proxy.upstream_error(path, resp, resp.content, headers)
        return Response(resp.content, status_code=200, media_type="application/json", headers=headers)


def build_app(runtime: Runtime) -> Starlette:
    gw = Gateway(runtime)
    routes = [
        Route("/", gw.root, methods=["GET", "HEAD"]),
        Route("/api/version", gw.version, methods=["GET", "HEAD"]),
        *[Route(p, gw.inference, methods=["POST"]) for p in INFERENCE_KINDS],
        *control_routes(runtime),
        Route("/api/{rest:path}", gw.passthrough, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/v1/models", gw.passthrough, methods=["GET"]),
        Route("/v1/models/{rest:path}", gw.passthrough, methods=["GET"]),
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
    secured = SecurityMiddleware(
        app,
        max_body_bytes=int(server.max_body_mb * 1024 * 1024),
        check_host=server.is_loopback,
        allowed_origins=server.allowed_origins,
    )
    return secured  # type: ignore[return-value]
