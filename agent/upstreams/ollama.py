"""Ollama: the client's dialect is Ollama's own, so requests and answers pass unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from agent.errors import UpstreamError
from agent.upstreams.base import HEALTH_TIMEOUT, Reply, Upstream, UpstreamHealth, dumps

LOAD_TIMEOUT = HEALTH_TIMEOUT * 5  # seconds for an unload call
MB = 1024 * 1024


class OllamaUpstream(Upstream):
    kind = "ollama"
    label = "Ollama"
    start_hint = (
        "Start Ollama (`ollama serve` or the Ollama app), or point powergate at it with --upstream / "
        "POWERGATE_UPSTREAM."
    )

    async def infer(self, path: str, body: dict[str, Any], headers: dict[str, str], *, stream: bool) -> Reply:
        # Ollama serves both the Ollama and the OpenAI dialect itself: same path, same body.
        return await self.send("POST", path, content=dumps(body), headers=headers, stream=stream)

    async def passthrough(
        self,
        method: str,
        path: str,
        content: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        params: Any = None,
    ) -> Reply:
        return await self.send(method, path, content=content, headers=headers, params=params, stream=True)

    async def check(self) -> UpstreamHealth:
        """GET /api/version with a short timeout."""
        try:
            try:
                r = await self.client.get("/api/version", timeout=HEALTH_TIMEOUT)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A kept-alive connection the server closed while idle is not an outage:
                # ask once more on a fresh connection before declaring Ollama down.
                async with httpx.AsyncClient(
                    base_url=self.url, timeout=HEALTH_TIMEOUT, trust_env=False, headers=self.client.headers
                ) as fresh:
                    r = await fresh.get("/api/version")
            r.raise_for_status()
            self.health.version = str(r.json().get("version", ""))
            self._mark(True)
        except (httpx.HTTPError, ValueError) as exc:
            self._mark(False, self.unreachable_message(exc))
        return self.health

    async def loaded_models(self) -> list[str]:
        """What Ollama has in memory now (GET /api/ps)."""
        try:
            r = await self.client.get("/api/ps", timeout=HEALTH_TIMEOUT)
            r.raise_for_status()
            return [str(m.get("model") or m.get("name")) for m in r.json().get("models", [])]
        except (httpx.HTTPError, ValueError):
            return []

    async def loaded_contexts(self) -> dict[str, int]:
        """`context_length` of each runner in GET /api/ps (what num_ctx it was loaded with)."""
        try:
            r = await self.client.get("/api/ps", timeout=HEALTH_TIMEOUT)
            r.raise_for_status()
            out = {}
            for m in r.json().get("models", []):
                ctx = m.get("context_length")
                if isinstance(ctx, int) and ctx > 0:
                    out[str(m.get("model") or m.get("name"))] = ctx
            return out
        except (httpx.HTTPError, ValueError, AttributeError):
            return {}

    async def list_models(self) -> dict[str, float | None] | None:
        """GET /api/tags (raises UpstreamError when Ollama does not answer it)."""
        r = await self.send("GET", "/api/tags", timeout=HEALTH_TIMEOUT)
        try:
            r.raise_for_status()
            models = r.json().get("models", [])
            return {
                str(m.get("model") or m.get("name")): (m["size"] / MB if isinstance(m.get("size"), int) else None)
                for m in models
                if isinstance(m, dict)
            }
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise UpstreamError(f"{self.label} at {self.url} answered /api/tags with {exc}", url=self.url) from exc

    async def load(self, model: str, keep_alive: str, options: dict[str, Any]) -> bool:
        """An empty-prompt generate loads the model and keeps it for `keep_alive`."""
        body: dict[str, Any] = {"model": model, "prompt": "", "keep_alive": keep_alive, "options": options}
        r = await self.send("POST", "/api/generate", content=dumps(body), headers={"content-type": "application/json"})
        return r.status_code == 200

    async def unload(self, model: str) -> bool:
        """Ask Ollama to let a model go now (empty generate with keep_alive 0)."""
        try:
            r = await self.client.post("/api/generate", json={"model": model, "keep_alive": 0}, timeout=LOAD_TIMEOUT)
            return r.status_code == 200
        except httpx.HTTPError:
            return False
