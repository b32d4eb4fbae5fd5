"""The configured upstreams, which kind each is, and which one serves a request."""

from __future__ import annotations

import logging

import httpx

from agent.config import UpstreamSettings
from agent.upstreams.base import HEALTH_TIMEOUT, Upstream
from agent.upstreams.health import UpstreamHealth
from agent.upstreams.llamacpp import LlamaCppUpstream
from agent.upstreams.ollama import OllamaUpstream
from agent.upstreams.openai import OpenAIUpstream

log = logging.getLogger(__name__)

KINDS: dict[str, type[Upstream]] = {"ollama": OllamaUpstream, "llamacpp": LlamaCppUpstream, "openai": OpenAIUpstream}
LLAMACPP_PROPS = ("total_slots", "default_generation_settings")  # keys only llama-server's /props has


def make_upstream(settings: UpstreamSettings) -> Upstream:
    """The backend for one `[[upstream]]` table; "auto" starts as Ollama until probed."""
    return KINDS.get(settings.kind, OllamaUpstream)(settings)


async def probe(client: httpx.AsyncClient) -> str | None:
    """Which kind of server answers at this client's base URL (None: nothing answered)."""

    async def get_json(path: str) -> tuple[int, object]:
        try:
            r = await client.get(path, timeout=HEALTH_TIMEOUT)
        except httpx.HTTPError:
            return 0, None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, None

    status, doc = await get_json("/api/version")
    if status == 0:
        return None  # not reachable: probe again at the next check
    if status == 200 and isinstance(doc, dict) and "version" in doc:
        return "ollama"
    status, _ = await get_json("/health")
    if status in (200, 503):
        status, doc = await get_json("/props")
        if status == 200 and isinstance(doc, dict) and any(k in doc for k in LLAMACPP_PROPS):
            return "llamacpp"
    for path in ("/api/v0/models", "/v1/models"):  # LM Studio's own list, then any OpenAI server
        status, doc = await get_json(path)
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("data"), list):
            return "openai"
    return None


class UpstreamPool:
    def __init__(self, settings: tuple[UpstreamSettings, ...]) -> None:
        self.upstreams = [make_upstream(s) for s in settings]

    def pick(self) -> Upstream:
        # Prefer reachable upstreams, then the heaviest weight; an unknown health counts as
        # reachable so that the first request after start is not refused.
        candidates = [u for u in self.upstreams if u.health.reachable is not False] or self.upstreams
        return max(candidates, key=lambda u: u.settings.weight)

    @property
    def primary(self) -> Upstream:
        return self.upstreams[0]

    async def _resolve_kind(self, i: int) -> Upstream:
        """Probe an "auto" upstream once it answers, and swap in the backend of its kind.
        Its health (with the tray's listeners) and its queue carry over."""
        up = self.upstreams[i]
        kind = await probe(up.client)
        if kind is None:
            return up
        up.kind_known = True
        if kind == up.kind:
            return up
        new = KINDS[kind](up.settings)
        new.health, new.scheduler = up.health, up.scheduler
        new.kind_known = True
        self.upstreams[i] = new
        await up.aclose()
        log.info("upstream %s speaks %s", up.url, kind)
        return new

    async def check_all(self) -> list[UpstreamHealth]:
        out = []
        for i, up in enumerate(list(self.upstreams)):
            if not up.kind_known:
                up = await self._resolve_kind(i)
            out.append(await up.check())
        return out

    async def aclose(self) -> None:
        for u in self.upstreams:
            await u.aclose()
