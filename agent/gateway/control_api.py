"""The control API: /agent/* for the CLI, the tray and the dashboard."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent import __version__
from agent.control import UnknownProfile
from agent.errors import BadRequest
from agent.gateway.responses import error_response, json_response, powergate_headers
from agent.gateway.validate import parse_json_object
from agent.metrics import metrics_document, recommendations
from agent.platform.paths import assets_dir

if TYPE_CHECKING:
    from agent.runtime import Runtime

Handler = Callable[[Request], Awaitable[Response]]


def control_routes(rt: Runtime) -> list[BaseRoute]:
    token = rt.settings.server.control_token

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            if token:
                given = request.headers.get("x-powergate-token", "")
                auth = request.headers.get("authorization", "")
                if auth.lower().startswith("bearer "):
                    given = given or auth[7:]
                given = given or request.query_params.get("token", "")
                if not hmac.compare_digest(given.encode(), token.encode()):
                    return error_response(
                        request.url.path,
                        "control API needs the control_token (X-Powergate-Token header)",
                        401,
                        headers=hdrs(),
                    )
            return await handler(request)

        return wrapped

    def hdrs() -> dict[str, str]:
        return powergate_headers("bypass", "", rt.controller.profile.name)

    async def status(request: Request) -> Response:
        if request.query_params.get("check") == "1":
            await rt.upstreams.refresh()
        return json_response(await status_document(rt), headers=hdrs())

    async def get_profile(request: Request) -> Response:
        c = rt.controller
        return json_response(
            {"profile": c.profile.name, "mode": c.mode, "profiles": c.profile_names, "settings": c.profile.as_dict()},
            headers=hdrs(),
        )

    async def put_profile(request: Request) -> Response:
        try:
            body = parse_json_object(await request.body())
            name = body.get("profile")
            mode = body.get("mode")
            source = str(body.get("source") or "api")
            if name is None and mode is None:
                raise BadRequest('expected {"profile": NAME}, {"mode": "auto"} or {"mode": "manual"}')
            if name == "auto":
                name, mode = None, "auto"
            if mode is not None and mode not in ("auto", "manual"):
                raise BadRequest(f"unknown mode {mode!r}; valid: auto, manual", param="mode")
            if name is not None:
                if not isinstance(name, str):
                    raise BadRequest("'profile' must be a string", param="profile")
                if mode == "auto":
                    raise BadRequest("choose a profile or auto mode, not both", param="mode")
                rt.controller.set_profile(
                    name,
                    reason=str(body.get("reason") or f"chosen by the user ({source})"),
                    source=source,
                    pin=mode == "manual",
                )
            elif mode is not None:
                rt.controller.set_mode(mode, source=source)
        except UnknownProfile as exc:
            return error_response(request.url.path, str(exc), 400, headers=hdrs())
        except BadRequest as exc:
            return error_response(request.url.path, str(exc), 400, headers=hdrs())
        return await get_profile(request)

    async def cache_clear(request: Request) -> Response:
        cleared = await rt.cache.clear()
        return json_response({"cleared": cleared}, headers=hdrs())

    async def cache_state(request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = parse_json_object(await request.body())
                paused = body.get("paused")
                if not isinstance(paused, bool):
                    raise BadRequest('expected {"paused": true|false}', param="paused")
            except BadRequest as exc:
                return error_response(request.url.path, str(exc), 400, headers=hdrs())
            rt.controller.set_cache_paused(paused, source=str(body.get("source") or "api"))
        return json_response({"paused": rt.controller.cache_paused, **(await rt.cache.describe())}, headers=hdrs())

    async def metrics_json(request: Request) -> Response:
        return json_response(await metrics_document(rt), headers=hdrs())

    async def prometheus(request: Request) -> Response:
        await rt.cache.stats()  # refresh entries and bytes of every tier
        return Response(rt.metrics.prometheus(), media_type=CONTENT_TYPE_LATEST, headers=hdrs())

    static = StaticFiles(directory=str(assets_dir() / "dashboard"), check_dir=False)

    async def dashboard(request: Request) -> Response:
        index = assets_dir() / "dashboard" / "index.html"
        if not index.exists():
            return error_response(
                request.url.path, "the dashboard files are missing from this installation", 404, headers=hdrs()
            )
        return FileResponse(index, media_type="text/html", headers={**hdrs(), "Cache-Control": "no-cache"})

    return [
        Route("/agent/metrics", guarded(metrics_json), methods=["GET"]),
        Route("/metrics", guarded(prometheus), methods=["GET"]),
        Route("/dashboard", guarded(dashboard), methods=["GET"]),
        Mount("/dashboard/static", app=static),
        Route("/agent/cache", guarded(cache_state), methods=["GET", "PUT"]),
        Route("/agent/cache/clear", guarded(cache_clear), methods=["POST"]),
        Route("/agent/status", guarded(status), methods=["GET"]),
        Route("/agent/profile", guarded(get_profile), methods=["GET"]),
        Route("/agent/profile", guarded(put_profile), methods=["PUT", "POST"]),
    ]


async def status_document(rt: Runtime) -> dict[str, Any]:
    c = rt.controller
    s = rt.settings
    return {
        "version": __version__,
        "listen": f"http://{s.server.host}:{s.server.port}",
        "uptime_s": round(time.time() - rt.started_at, 1),
        "profile": c.profile.name,
        "mode": c.mode,
        "pinned": c.pinned,
        "profiles": c.profile_names,
        "power": c.power.as_dict() if c.power else None,
        "policy": {
            "memory_pressure": c.policy.memory_pressure,
            "cpu_busy": c.policy.cpu_busy,
            "battery_low": c.policy.saver,
        },
        "routing": rt.routing_stats(),
        "scheduling": rt.scheduling_stats(),
        "profile_settings": c.profile.as_dict(),
        "history": c.describe()["history"],
        # each host's state, what it holds, and its score for the profile's suggestion model
        "upstreams": rt.upstreams.describe(s.models.for_tier(c.profile.autocomplete)),
        "cache_paused": c.cache_paused,
        "cache": await rt.cache.describe(),
        "recommendations": recommendations(rt),
        "in_flight": len(rt.flights),
        "database": rt.database.describe() if rt.database is not None else None,
        "lightrag": rt.lightrag.describe() if rt.lightrag is not None else None,
    }
