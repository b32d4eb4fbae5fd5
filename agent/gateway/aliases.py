"""The model names powergate adds (`autocomplete`, `chat`, `embed`, `auto`) as real models to a client.

Clients check a model before they use it: LangChain's `validate_model_on_init` looks
for it in `/api/tags`, llama-index asks `/api/show` first, model pickers list
`/api/tags` or `/v1/models`. So each alias is listed there with the details of the
model it resolves to under the profile in force now and a description naming that
model, and `/api/show` and `GET /v1/models/{id}` answer for it as for that model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from agent.errors import UpstreamError
from agent.gateway import proxy
from agent.gateway.responses import (
    H_MODEL,
    JSON_OLLAMA,
    JSON_OPENAI,
    error_response,
    powergate_headers,
)
from agent.profiles import Profile
from agent.routing import ALIAS_JOBS, AUTO, alias_name, strip_latest

if TYPE_CHECKING:
    from agent.runtime import Runtime

ALIASES = (*ALIAS_JOBS, AUTO)
BYPASS = "bypass"


@dataclass(frozen=True)
class Alias:
    name: str
    model: str  # what it resolves to now
    description: str


def resolve_aliases(profile: Profile, models: Any) -> list[Alias]:
    """Each alias and the model it stands for under `profile` now."""
    from agent.routing import route  # local: routing imports nothing from the gateway

    out = []
    for name, kind in (("autocomplete", "generate"), ("chat", "chat"), ("embed", "embed")):
        model = route(name, kind, {"suffix": "\n"} if name == "autocomplete" else {}, profile, models).model
        out.append(Alias(name, model, f"powergate alias: {model}, the {profile.name} profile's {name} model"))
    biggest = models.for_tier(profile.cap)
    out.append(
        Alias(
            AUTO,
            biggest,
            f"powergate alias: chosen by the prompt's complexity, up to {biggest} ({profile.name} profile)",
        )
    )
    return out


def _same(a: str, b: str) -> bool:
    return strip_latest(a) == strip_latest(b)


class ModelListing:
    """`/api/tags`, `/api/show`, `/v1/models` and `/v1/models/{id}` with the aliases in them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _aliases(self) -> tuple[Profile, list[Alias]]:
        profile = self.rt.controller.profile
        return profile, resolve_aliases(profile, self.rt.settings.models)

    async def _call(
        self, request: Request, method: str, path: str, content: bytes | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """Through the backend's pass-through, which speaks Ollama's API for every server kind."""
        upstream = self.rt.upstreams.pick()
        headers = proxy.forward_headers(request)
        if content is not None:
            headers["content-type"] = "application/json"
        resp = await upstream.passthrough(method, path, content, headers)
        try:
            body = await resp.aread()
        finally:
            await resp.aclose()
        return resp.status_code, body, dict(resp.headers)

    async def _get(self, request: Request, path: str) -> tuple[int, bytes, dict[str, str]]:
        return await self._call(request, "GET", path)

    def _upstream_failed(self, path: str, exc: UpstreamError) -> Response:
        headers = powergate_headers(BYPASS, "", self.rt.controller.profile.name)
        return error_response(path, str(exc), exc.status_code, headers=headers)

    async def _listing(
        self, request: Request, path: str, key: str, media_type: str
    ) -> Response | tuple[dict[str, Any], list[Any], list[Any], dict[str, str]]:
        """The upstream's model list at `path` (its `key` list), or the answer to relay as it is."""
        profile, aliases = self._aliases()
        headers = powergate_headers(BYPASS, "", profile.name)
        try:
            status, content, _ = await self._get(request, path)
        except UpstreamError as exc:
            return self._upstream_failed(path, exc)
        if status != 200:
            return proxy.upstream_error(path, status, content, headers)
        try:
            doc = json.loads(content)
            items = list(doc.get(key) or [])
        except (ValueError, AttributeError):
            return Response(content, media_type=media_type, headers=headers)
        return doc, items, aliases, headers

    async def tags(self, request: Request) -> Response:
        listing = await self._listing(request, "/api/tags", "models", JSON_OLLAMA)
        if isinstance(listing, Response):
            return listing
        doc, models, aliases, headers = listing
        for alias in aliases:
            target = next((m for m in models if _same(str(m.get("model") or m.get("name")), alias.model)), None)
            entry: dict[str, Any] = dict(target) if target is not None else {"size": 0, "digest": "", "details": {}}
            entry.update(name=alias.name, model=alias.name, description=alias.description)
            entry.setdefault("modified_at", "1970-01-01T00:00:00Z")
            models.append(entry)
        doc["models"] = models
        body = json.dumps(doc, separators=(",", ":")).encode()
        # HEAD gets the same headers (with the GET's length); the server sends no body
        return Response(body, media_type=JSON_OLLAMA, headers=headers)

    async def show(self, request: Request) -> Response:
        profile, aliases = self._aliases()
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        requested = None
        if isinstance(body, dict):
            requested = body.get("model") or body.get("name")
        alias = next((a for a in aliases if isinstance(requested, str) and alias_name(requested) == a.name), None)
        headers = powergate_headers(BYPASS, "", profile.name)
        if alias is not None and isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "name"}
            body["model"] = alias.model
            raw = json.dumps(body).encode()
            headers[H_MODEL] = alias.model
        try:
            status, content, up_headers = await self._call(request, "POST", "/api/show", raw)
        except UpstreamError as exc:
            return self._upstream_failed("/api/show", exc)
        if status != 200:
            return proxy.upstream_error("/api/show", status, content, headers)
        if alias is None:
            return Response(content, media_type=up_headers.get("content-type", JSON_OLLAMA), headers=headers)
        try:
            doc = json.loads(content)
        except ValueError:
            return Response(content, media_type=JSON_OLLAMA, headers=headers)
        if isinstance(doc, dict):
            doc["description"] = alias.description
        return Response(json.dumps(doc, separators=(",", ":")).encode(), media_type=JSON_OLLAMA, headers=headers)

    async def v1_models(self, request: Request) -> Response:
        listing = await self._listing(request, "/v1/models", "data", JSON_OPENAI)
        if isinstance(listing, Response):
            return listing
        doc, data, aliases, headers = listing
        for alias in aliases:
            target = next((m for m in data if _same(str(m.get("id")), alias.model)), None)
            created = target.get("created", 0) if target is not None else 0
            data.append(
                {
                    "id": alias.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "powergate",
                    "description": alias.description,
                }
            )
        doc["data"] = data
        return Response(json.dumps(doc, separators=(",", ":")).encode(), media_type=JSON_OPENAI, headers=headers)

    async def v1_model(self, request: Request) -> Response:
        profile, aliases = self._aliases()
        requested = request.path_params["model"]
        alias = next((a for a in aliases if alias_name(requested) == a.name), None)
        headers = powergate_headers(BYPASS, alias.model if alias else "", profile.name)
        target = alias.model if alias is not None else requested
        try:
            status, content, _ = await self._get(request, f"/v1/models/{target}")
        except UpstreamError as exc:
            return self._upstream_failed(request.url.path, exc)
        if status != 200:
            return proxy.upstream_error(request.url.path, status, content, headers)
        if alias is None:
            return Response(content, media_type=JSON_OPENAI, headers=headers)
        try:
            doc = json.loads(content)
        except ValueError:
            return Response(content, media_type=JSON_OPENAI, headers=headers)
        doc.update(id=requested, owned_by="powergate", description=alias.description)
        return Response(json.dumps(doc, separators=(",", ":")).encode(), media_type=JSON_OPENAI, headers=headers)
