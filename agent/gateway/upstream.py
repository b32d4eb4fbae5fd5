"""Ollama upstreams: pooled keep-alive HTTP clients and their health.

httpx errors are translated here into powergate's UpstreamError family, with a
message that names the URL that was tried and what the user can do about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from agent.config import UpstreamSettings
from agent.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from agent.scheduling import Scheduler

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.5  # seconds: Ollama on loopback answers a connect at once, or is not running
READ_TIMEOUT = 600.0  # seconds between bytes: a cold load of a big model can take minutes
WRITE_TIMEOUT = 60.0  # seconds
HEALTH_TIMEOUT = 2.0  # seconds for GET /api/version
KEEPALIVE_CONNECTIONS = 32
KEEPALIVE_EXPIRY = 120.0  # seconds an idle pooled connection is kept

# Headers that describe one hop, or that httpx must compute itself for the upstream.
HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "accept-encoding",
        "origin",
        "referer",
        "cache-control",
    }
)
RESPONSE_DROP = frozenset(
    {"content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding", "date", "server"}
)

START_HINT = (
    "Start Ollama (`ollama serve` or the Ollama app), or point powergate at it with --upstream / POWERGATE_UPSTREAM."
)


@dataclass
class UpstreamHealth:
    reachable: bool | None = None  # None: not checked yet
    version: str = ""
    error: str = ""
    checked_at: float = 0.0


class Upstream:
    """One Ollama server: a pooled httpx client plus what we know of its health."""

    def __init__(self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.url = settings.url
        self.health = UpstreamHealth()
        self.listeners: list[Any] = []  # called with (upstream, reachable) when that changes
        self.scheduler = Scheduler(settings.max_concurrency, settings.url, settings.max_queue)
        self.client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT, write=WRITE_TIMEOUT, pool=None),
            limits=httpx.Limits(max_keepalive_connections=KEEPALIVE_CONNECTIONS, keepalive_expiry=KEEPALIVE_EXPIRY),
            # Never send loopback traffic through a proxy from the environment.
            trust_env=False,
            transport=transport,
            headers={"Accept-Encoding": "identity", "User-Agent": "powergate"},
        )

    def _mark(self, ok: bool, error: str = "") -> None:
        changed = self.health.reachable is not ok
        self.health.reachable = ok
        self.health.error = error
        self.health.checked_at = time.time()
        if changed:
            if ok:
                log.info("upstream %s is reachable", self.url)
            else:
                log.warning("upstream %s is not reachable: %s", self.url, error)
            for listener in list(self.listeners):
                try:
                    listener(self, ok)
                except Exception:  # the tray or a notifier must not break a request
                    log.exception("upstream listener failed")

    def translate(self, exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            msg = f"Ollama is not reachable at {self.url} ({type(exc).__name__}). {START_HINT}"
            self._mark(False, msg)
            return UpstreamUnavailable(msg, url=self.url)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"Ollama at {self.url} did not answer in time ({type(exc).__name__})", url=self.url)
        if isinstance(exc, httpx.RemoteProtocolError):
            return UpstreamUnavailable(f"Ollama at {self.url} closed the connection: {exc}", url=self.url)
        return UpstreamError(f"error talking to Ollama at {self.url}: {exc}", url=self.url)

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request; with stream=True the caller must close the response."""
        req = self.client.build_request(method, path, json=json_body, content=content, headers=headers, params=params)
        try:
            resp = await self.client.send(req, stream=stream)
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc
        if self.health.reachable is not True:
            self._mark(True)
        return resp

    async def check(self) -> UpstreamHealth:
        """GET /api/version with a short timeout; updates and returns the health."""
        try:
            r = await self.client.get("/api/version", timeout=HEALTH_TIMEOUT)
            r.raise_for_status()
            self.health.version = str(r.json().get("version", ""))
            self._mark(True)
        except (httpx.HTTPError, ValueError) as exc:
            msg = f"Ollama is not reachable at {self.url} ({type(exc).__name__}). {START_HINT}"
            self._mark(False, msg)
        return self.health

    async def loaded_models(self) -> list[str]:
        """What Ollama has in memory now (GET /api/ps)."""
        try:
            r = await self.client.get("/api/ps", timeout=HEALTH_TIMEOUT)
            r.raise_for_status()
            return [str(m.get("model") or m.get("name")) for m in r.json().get("models", [])]
        except (httpx.HTTPError, ValueError):
            return []

    async def unload(self, model: str) -> bool:
        """Ask Ollama to let a model go now (empty generate with keep_alive 0)."""
        try:
            r = await self.client.post(
                "/api/generate", json={"model": model, "keep_alive": 0}, timeout=HEALTH_TIMEOUT * 5
            )
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.health.reachable,
            "version": self.health.version,
            "error": self.health.error,
            "checked_at": self.health.checked_at,
            "max_concurrency": self.settings.max_concurrency,
            "max_queue": self.settings.max_queue,
            "weight": self.settings.weight,
        }

    async def aclose(self) -> None:
        await self.client.aclose()


class UpstreamPool:
    """The configured upstreams; picks the one that serves a request."""

    def __init__(self, settings: tuple[UpstreamSettings, ...]) -> None:
        self.upstreams = [Upstream(s) for s in settings]

    def pick(self) -> Upstream:
        # Prefer reachable upstreams, then the heaviest weight; an unknown health counts as
        # reachable so that the first request after start is not refused.
        candidates = [u for u in self.upstreams if u.health.reachable is not False] or self.upstreams
        return max(candidates, key=lambda u: u.settings.weight)

    @property
    def primary(self) -> Upstream:
        return self.upstreams[0]

    async def check_all(self) -> list[UpstreamHealth]:
        return [await u.check() for u in self.upstreams]

    async def aclose(self) -> None:
        for u in self.upstreams:
            await u.aclose()
