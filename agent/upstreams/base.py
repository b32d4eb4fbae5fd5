"""The backend protocol: one upstream model server, whatever API it speaks.

The journey hands a backend a request in the CLIENT's dialect (an Ollama or
OpenAI path and body, already routed) and gets back a `Reply` in that same
dialect: the client never knows which kind of server answered, like an httpx
transport. Each kind (ollama.py, llamacpp.py, openai.py) encodes the
upstream's own dialect only inside its module.

The HTTP plumbing every kind shares lives here: a pooled keep-alive client, the
translation of httpx errors into powergate's UpstreamError family (with a
message that names the URL that was tried and what the user can do), health.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

import httpx

from agent.config import UpstreamSettings
from agent.errors import UpstreamError, UpstreamRefused, UpstreamTimeout, UpstreamUnavailable
from agent.upstreams.health import HealthListener, UpstreamHealth
from agent.upstreams.scheduling import Scheduler

CONNECT_TIMEOUT = 1.5  # seconds: a server on loopback answers a connect at once, or is not running
READ_TIMEOUT = 600.0  # seconds between bytes: a cold load of a big model can take minutes
WRITE_TIMEOUT = 60.0  # seconds
HEALTH_TIMEOUT = 2.0  # seconds for a health check
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


class Reply(Protocol):
    """An upstream's answer in the client's dialect: the part of httpx.Response the journey reads.

    Read either whole (`content` after a non-streamed call, or `aread()`) or as raw bytes
    (`aiter_raw()`: NDJSON lines for Ollama paths, SSE events for /v1 paths). `aclose()` closes
    the upstream request: that is what stops the server generating when a client aborts.
    """

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> httpx.Headers: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Upstream(abc.ABC):
    """One model server: a pooled httpx client, its health and its scheduler (queue of slots)."""

    kind: ClassVar[str] = ""
    label: ClassVar[str] = "the upstream"  # how messages name this kind of server
    start_hint: ClassVar[str] = "Start it, or point powergate at it with --upstream / POWERGATE_UPSTREAM."

    def __init__(self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.url = settings.url
        self.health = UpstreamHealth()
        self.kind_known = settings.kind != "auto"  # "auto": probed at the first check that reaches it
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

    @property
    def listeners(self) -> list[HealthListener]:
        """Called with (upstream, reachable) when reachability changes."""
        return self.health.listeners

    def _mark(self, ok: bool, error: str = "") -> None:
        self.health.mark(self, ok, error)

    def unreachable_message(self, exc: Exception) -> str:
        return f"{self.label} is not reachable at {self.url} ({type(exc).__name__}). {self.start_hint}"

    def translate(self, exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            msg = self.unreachable_message(exc)
            self._mark(False, msg)
            return UpstreamRefused(msg, url=self.url)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(
                f"{self.label} at {self.url} did not answer in time ({type(exc).__name__})", url=self.url
            )
        if isinstance(exc, httpx.RemoteProtocolError):
            return UpstreamUnavailable(f"{self.label} at {self.url} closed the connection: {exc}", url=self.url)
        if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
            return UpstreamUnavailable(f"{self.label} at {self.url} reset the connection: {exc}", url=self.url)
        return UpstreamError(f"error talking to {self.label} at {self.url}: {exc}", url=self.url)

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
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one raw request in the upstream's own dialect; with stream=True the caller closes it."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        # Header values come from clients as latin-1 text; httpx would encode them as ASCII
        # and fail on `User-Agent: Mozilla é`: send the client's own bytes instead.
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in (headers or {}).items()]
        req = self.client.build_request(
            method, path, json=json_body, content=content, headers=raw_headers, params=params, **extra
        )
        try:
            resp = await self.client.send(req, stream=stream)
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc
        if self.health.reachable is not True:
            self._mark(True)
        return resp

    # ------------------------------------------------------------ what each kind provides
    @abc.abstractmethod
    async def infer(self, path: str, body: dict[str, Any], headers: dict[str, str], *, stream: bool) -> Reply:
        """One inference call given in the client's dialect (`path` is an Ollama or /v1 path,
        `body` carries its own `stream` flag); the reply is in that dialect. With stream=True
        the reply is read as it arrives and the caller must close it."""

    @abc.abstractmethod
    async def passthrough(
        self,
        method: str,
        path: str,
        content: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        params: Any = None,
    ) -> Reply:
        """Any other /api/* or /v1/models call (streamed reply; the caller closes it)."""

    @abc.abstractmethod
    async def check(self) -> UpstreamHealth:
        """A cheap health probe with a short timeout; updates and returns the health."""

    @abc.abstractmethod
    async def loaded_models(self) -> list[str]:
        """The models the server holds in memory now."""

    async def loaded_contexts(self) -> dict[str, int]:
        """The context size (tokens) of each loaded model's runner, where the server says it."""
        return {}

    async def list_models(self) -> dict[str, float | None] | None:
        """The models the server offers, name -> size in MB (None for a size it does not say);
        None when this kind cannot list them (every model is then assumed available)."""
        return None

    @abc.abstractmethod
    async def load(self, model: str, keep_alive: str, options: dict[str, Any]) -> bool:
        """Warm a model up so the next suggestion does not pay for loading it."""

    @abc.abstractmethod
    async def unload(self, model: str) -> bool:
        """Let a model go now, where the server can."""

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "reachable": self.health.reachable,
            "version": self.health.version,
            "error": self.health.error,
            "checked_at": self.health.checked_at,
            "max_concurrency": self.scheduler.slots,
            "max_queue": self.scheduler.max_queue,
            "weight": self.settings.weight,
        }

    async def aclose(self) -> None:
        await self.client.aclose()


def dumps(body: dict[str, Any]) -> bytes:
    """A request body as compact JSON (what every backend sends)."""
    return json.dumps(body, separators=(",", ":")).encode()
