"""The LightRAG front: LightRAG's whole API under /lightrag/, with a query cache that is never stale.

Every path is passed through both ways, streamed, with the configured API key
added when the client sends no credentials of its own. On top:

- /query, /query/data and /query/stream answers are cached, keyed by the whole
  request body (every field that changes the answer), the client's credentials,
  the corpus version and LightRAG's model identity (see lightrag_watch);
  /query/stream answers are replayed as a stream;
- identical queries in flight share one LightRAG call (`X-Powergate-Cache: coalesced`);
- document calls move the corpus version (before and after they are forwarded),
  and the corpus watch polls LightRAG at the profile's sampling interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from agent.cache.base import Entry
from agent.cache.keys import digest
from agent.config import LightRAGSettings, is_loopback_host
from agent.errors import LightRAGUnavailable, UpstreamError, UpstreamTimeout
from agent.gateway.responses import powergate_headers
from agent.services.lightrag_watch import CorpusWatch
from agent.upstreams.base import HOP_HEADERS, RESPONSE_DROP

if TYPE_CHECKING:
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "/lightrag"
MODEL = "lightrag"  # X-Powergate-Model of answers LightRAG gave
QUERY_PATHS = ("/query", "/query/data", "/query/stream")
# Answers passing through that the watch reads too. Not /health: LightRAG serves it without
# a key, so a client's look at it must not make a watch that cannot read the documents
# believe it sees LightRAG.
WATCHED_PATHS = ("/documents/pipeline_status", "/documents/status_counts")
# Calls that change what queries answer: documents (indexed in the background) and direct
# knowledge-graph edits (synchronous). POST /documents/paginated only lists documents.
WRITE_PREFIXES = ("/documents", "/graph/")
READ_ONLY_POSTS = ("/documents/paginated",)
CONNECT_TIMEOUT = 2.0  # seconds: LightRAG runs on this machine or the LAN
READ_TIMEOUT = 900.0  # seconds between bytes: a query waits for LightRAG's own model calls
WRITE_TIMEOUT = 120.0  # seconds: uploads of big documents
POLL_TIMEOUT = 5.0  # seconds for one watch request
MAX_OBSERVED_BYTES = 4 * 1024 * 1024  # watched answers larger than this are relayed without being read
CREDENTIAL_HEADERS = ("x-api-key", "authorization")
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
MISS, BYPASS, COALESCED = "miss", "bypass", "coalesced"


@dataclass
class QueryStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypass: int = 0
    not_stored: int = 0  # answered while the corpus was settling: served, not cached

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class QueryFlight:
    """One LightRAG query in the air; identical queries wait for it instead of asking again."""

    key: str
    status: int = 0
    media_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)  # raw bytes as LightRAG sent them
    error: UpstreamError | None = None
    done: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def started(self) -> None:
        while self.status == 0 and not self.done:
            await self._changed.wait()

    async def finished(self) -> None:
        while not self.done:
            await self._changed.wait()

    async def relay(self) -> AsyncIterator[bytes]:
        i = 0
        while True:
            changed = self._changed
            if i < len(self.chunks):
                pending = self.chunks[i:]
                i += len(pending)
                yield b"".join(pending)
                continue
            if self.done:
                return
            await changed.wait()

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class QueryAnswer:
    """A whole query answer, for callers inside powergate (the `lightrag` model)."""

    status: int
    body: bytes
    outcome: str


def detail_response(message: str, status: int, headers: dict[str, str]) -> Response:
    """An error in LightRAG's own (FastAPI) format."""
    return Response(
        json.dumps({"detail": message}).encode(), status_code=status, media_type="application/json", headers=headers
    )


def _entry_chunks(path: str, body: bytes) -> list[bytes] | None:
    """An answer as cache-entry lines (one JSON document each), or None when it must not be stored."""
    lines = [ln.strip() for ln in body.split(b"\n") if ln.strip()] if path == "/query/stream" else [body.strip()]
    docs = []
    for ln in lines:
        try:
            doc = json.loads(ln)
        except ValueError:
            return None
        if isinstance(doc, dict) and (doc.get("error") or doc.get("status") == "failure"):
            return None  # LightRAG reported a failure inside a 200: never replay it
        docs.append(doc)
    if not docs:
        return None
    return [json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode() for d in docs]


def unconfigured_routes() -> list[BaseRoute]:
    """/lightrag/ when no LightRAG is configured: say how to configure one."""

    async def missing(request: Request) -> Response:
        return detail_response(
            "no LightRAG server is configured: set [lightrag] url in powergate's config (`powergate config path`)",
            404,
            powergate_headers(BYPASS, "", ""),
        )

    return [Route(PREFIX, missing, methods=METHODS), Route(PREFIX + "/{rest:path}", missing, methods=METHODS)]


class LightRAGFront:
    """The /lightrag/ routes, the query cache and the corpus watch of one configured LightRAG."""

    def __init__(self, rt: Runtime, settings: LightRAGSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.rt = rt
        self.settings = settings
        self.url = settings.url
        self.watch = CorpusWatch()
        self.stats = QueryStats()
        self.flights: dict[str, QueryFlight] = {}
        self._polling = False
        self.polls = 0  # watch polls completed
        self.client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT, write=WRITE_TIMEOUT, pool=None),
            trust_env=False,  # never send loopback traffic through a proxy from the environment
            transport=transport,
            headers={"Accept-Encoding": "identity", "User-Agent": "powergate"},
        )

    # ------------------------------------------------------------ talking to LightRAG
    def _translate(self, exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            msg = f"LightRAG is not reachable at {self.url} ({type(exc).__name__}); start it or fix [lightrag] url"
            self.watch.mark(False, msg)
            return LightRAGUnavailable(msg, url=self.url)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"LightRAG at {self.url} did not answer in time", url=self.url)
        return LightRAGUnavailable(f"error talking to LightRAG at {self.url}: {exc}", url=self.url)

    def _headers(self, request: Request | None) -> dict[str, str]:
        fwd = {k: v for k, v in request.headers.items() if k not in HOP_HEADERS} if request is not None else {}
        # The configured key is lent to this machine's clients (and powergate's own calls) only:
        # a powergate listening on the network must not open LightRAG to anyone who reaches it.
        local = request is None or (request.client is not None and is_loopback_host(request.client.host))
        if self.settings.api_key and local and not any(h in fwd for h in CREDENTIAL_HEADERS):
            fwd["x-api-key"] = self.settings.api_key
        return fwd

    def _out_headers(self, cache: str) -> dict[str, str]:
        return powergate_headers(cache, MODEL, self.rt.controller.profile.name)

    async def _send(
        self, method: str, path: str, headers: dict[str, str], content: Any = None, params: Any = None
    ) -> httpx.Response:
        req = self.client.build_request(method, path, content=content, headers=headers, params=params)
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        if self.watch.state.reachable is not True:
            self.watch.mark(True)
        return resp

    async def _get_json(self, path: str) -> dict[str, Any] | str | None:
        """The JSON document, None when LightRAG is away or answered nonsense, or why it refused."""
        try:
            r = await self.client.get(path, headers=self._headers(None), timeout=POLL_TIMEOUT)
        except httpx.HTTPError as exc:
            self._translate(exc)
            return None
        if r.status_code != 200:
            msg = f"LightRAG answered {r.status_code} on {path}"
            if r.status_code in (401, 403):
                msg += ": set [lightrag] api_key so that powergate can watch it (until then nothing is cached)"
            return msg
        try:
            doc = r.json()
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------ the corpus watch
    async def poll(self) -> None:
        """One look at LightRAG's health, document counts and pipeline, applied together."""
        if self._polling:
            return
        self._polling = True
        try:
            health = await self._get_json("/health")
            if health is None:
                return
            counts = await self._get_json("/documents/status_counts") if isinstance(health, dict) else None
            pipeline = await self._get_json("/documents/pipeline_status") if isinstance(counts, dict) else None
            refused = next((d for d in (health, counts, pipeline) if isinstance(d, str)), None)
            if refused is not None or not (isinstance(counts, dict) and isinstance(pipeline, dict)):
                # Part of the corpus state is hidden (LightRAG's /health needs no key, its
                # document routes do): a watch that cannot see every change sees none.
                self.watch.blind(refused or "LightRAG's document status could not be read")
                return
            assert isinstance(health, dict)
            self.watch.mark(True)
            self.watch.observe_health(health)
            self.watch.observe_counts(counts)
            self.watch.observe_pipeline(pipeline, from_poll=True)
        finally:
            self.polls += 1
            self._polling = False

    def on_snapshot(self, snap: Any) -> None:
        """Called at the profile's sampling interval (the power sampler's rhythm): poll then."""
        self.rt.spawn(self.poll())

    def _observe(self, path: str, body: bytes) -> None:
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        if path == "/documents/status_counts":
            self.watch.observe_counts(doc)
        else:
            self.watch.observe_pipeline(doc)

    # ------------------------------------------------------------ routes
    def routes(self) -> list[BaseRoute]:
        return [
            Route(PREFIX, self.handle, methods=METHODS),
            Route(PREFIX + "/{rest:path}", self.handle, methods=METHODS),
        ]

    async def handle(self, request: Request) -> Response:
        path = "/" + request.path_params.get("rest", "")
        if request.method == "POST" and path in QUERY_PATHS:
            return await self._query_route(request, path)
        is_write = (
            path.startswith(WRITE_PREFIXES)
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and path not in READ_ONLY_POSTS
        )
        if is_write:
            self.watch.note_write(path)
        try:
            return await self._passthrough(request, path, is_write)
        except UpstreamError as exc:
            if is_write:
                self.watch.write_done(path)
            return detail_response(str(exc), exc.status_code, self._out_headers(BYPASS))

    async def _passthrough(self, request: Request, path: str, is_write: bool) -> Response:
        has_body = request.method not in ("GET", "HEAD")
        resp = await self._send(
            request.method,
            path,
            self._headers(request),
            content=request.stream() if has_body else None,
            params=request.url.query or None,
        )
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in RESPONSE_DROP}
        headers.pop("content-type", None)
        headers.update(self._out_headers(BYPASS))
        media = resp.headers.get("content-type")
        size = int(resp.headers.get("content-length") or 0)
        watched = request.method == "GET" and path in WATCHED_PATHS and size <= MAX_OBSERVED_BYTES
        if request.method == "HEAD" or is_write or (watched and resp.status_code == 200):
            # Small answers we need to read (or nothing to stream): read them whole.
            try:
                body = await resp.aread()
            except httpx.HTTPError as exc:
                raise self._translate(exc) from exc
            finally:
                await resp.aclose()
            if is_write:
                self.watch.write_done(path)
            elif watched:
                self._observe(path, body)
            return Response(body, status_code=resp.status_code, headers=headers, media_type=media)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            except httpx.HTTPError:
                log.debug("LightRAG ended a passed-through answer early on %s", path)
            finally:
                await resp.aclose()

        return StreamingResponse(relay(), status_code=resp.status_code, headers=headers, media_type=media)

    # ------------------------------------------------------------ the query cache
    def key_for(self, path: str, body: dict[str, Any], credentials: str) -> str:
        st = self.watch.state
        return "lightrag:" + digest(path, body, credentials, st.tag, st.identity)

    async def _ensure_identity(self) -> None:
        # The first query after start may come before the first watch poll.
        if not self.watch.state.identity and not self._polling:
            await self.poll()

    async def _query_route(self, request: Request, path: str) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        cc = request.headers.get("cache-control", "").lower()
        no_read, no_store = "no-cache" in cc, "no-store" in cc
        fwd = self._headers(request)
        fwd["content-type"] = "application/json"
        if not isinstance(body, dict) or (no_read and no_store):
            # Malformed bodies go to LightRAG as they are, for its own 422 in its own words.
            self.stats.bypass += 1
            return await self._uncached(path, raw, fwd)
        await self._ensure_identity()
        if not self.watch.sees:
            # Unwatched (unreachable, or no key to read its state): never cache what may go stale.
            self.stats.bypass += 1
            return await self._uncached(path, raw, fwd)
        credentials = digest([fwd.get(h, "") for h in CREDENTIAL_HEADERS])
        key = self.key_for(path, body, credentials)
        hit = await self._lookup(key, no_read)
        if hit is not None:
            entry, outcome = hit
            return self._replay(path, entry, outcome)
        flight, outcome = self._join_or_start(key, path, raw, fwd, no_read, no_store)
        headers = self._out_headers(outcome)
        await flight.started()
        if flight.error is not None:
            return detail_response(str(flight.error), flight.error.status_code, self._out_headers(BYPASS))
        if path == "/query/stream" and outcome == MISS and flight.status == 200:
            return StreamingResponse(flight.relay(), media_type=flight.media_type, headers=headers)
        await flight.finished()
        if flight.error is not None:
            return detail_response(str(flight.error), flight.error.status_code, self._out_headers(BYPASS))
        return Response(flight.body, status_code=flight.status, media_type=flight.media_type, headers=headers)

    async def _lookup(self, key: str, no_read: bool) -> tuple[Entry, str] | None:
        if no_read or self.rt.controller.cache_paused:
            return None
        entry, outcome = await self.rt.cache.lookup(key)
        if entry is None:
            return None
        self.stats.hits += 1
        return entry, outcome

    def _replay(self, path: str, entry: Entry, outcome: str) -> Response:
        headers = self._out_headers(outcome)
        if path == "/query/stream":
            return Response(
                b"".join(c + b"\n" for c in entry.chunks), media_type="application/x-ndjson", headers=headers
            )
        return Response(entry.chunks[0], media_type="application/json", headers=headers)

    def _join_or_start(
        self, key: str, path: str, raw: bytes, fwd: dict[str, str], no_read: bool, no_store: bool
    ) -> tuple[QueryFlight, str]:
        flight = self.flights.get(key) if not no_read else None
        if flight is not None and not flight.done:
            self.stats.coalesced += 1
            return flight, COALESCED
        flight = QueryFlight(key)
        if not no_read:
            self.flights[key] = flight
        self.stats.misses += 1
        store = not no_store and not self.rt.controller.cache_paused and self.watch.storable
        # The LightRAG call runs on its own: a client that leaves does not waste what
        # LightRAG already spent on the answer, and followers still get it.
        self.rt.spawn(self._fly(flight, path, raw, fwd, store))
        return flight, MISS

    async def _fly(self, flight: QueryFlight, path: str, raw: bytes, fwd: dict[str, str], store: bool) -> None:
        try:
            resp = await self._send("POST", path, fwd, content=raw)
            flight.status = resp.status_code
            flight.media_type = resp.headers.get("content-type", "application/json").split(";")[0]
            flight.notify()
            try:
                async for chunk in resp.aiter_raw():
                    flight.chunks.append(chunk)
                    flight.notify()
            finally:
                await resp.aclose()
        except UpstreamError as exc:
            flight.error = exc
        except httpx.HTTPError as exc:
            flight.error = self._translate(exc)
        finally:
            flight.done = True
            if self.flights.get(flight.key) is flight:
                del self.flights[flight.key]
            flight.notify()
        if flight.error is None and flight.status == 200:
            # Stored under the version the query started with: if the corpus moved
            # meanwhile, that key is already unreachable.
            chunks = _entry_chunks(path, flight.body)
            if chunks is not None and store and self.watch.storable:
                self.rt.cache.store(flight.key, Entry("lightrag", MODEL, chunks, meta={"path": path}))
            elif chunks is not None:
                self.stats.not_stored += 1

    async def _uncached(self, path: str, raw: bytes, fwd: dict[str, str]) -> Response:
        try:
            resp = await self._send("POST", path, fwd, content=raw)
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
        except UpstreamError as exc:
            return detail_response(str(exc), exc.status_code, self._out_headers(BYPASS))
        except httpx.HTTPError as exc:
            err = self._translate(exc)
            return detail_response(str(err), err.status_code, self._out_headers(BYPASS))
        media = resp.headers.get("content-type", "application/json").split(";")[0]
        return Response(body, status_code=resp.status_code, media_type=media, headers=self._out_headers(BYPASS))

    async def query(self, body: dict[str, Any], no_read: bool = False, no_store: bool = False) -> QueryAnswer:
        """POST /query with the cache, for callers inside powergate (raises UpstreamError)."""
        await self._ensure_identity()
        fwd = self._headers(None)
        fwd["content-type"] = "application/json"
        credentials = digest([fwd.get(h, "") for h in CREDENTIAL_HEADERS])
        key = self.key_for("/query", body, credentials)
        unwatched = not self.watch.sees
        if unwatched:
            self.stats.bypass += 1
            no_read = no_store = True
        hit = await self._lookup(key, no_read)
        if hit is not None:
            return QueryAnswer(200, hit[0].chunks[0], hit[1])
        raw = json.dumps(body, separators=(",", ":")).encode()
        flight, outcome = self._join_or_start(key, "/query", raw, fwd, no_read, no_store)
        await flight.finished()
        if flight.error is not None:
            raise flight.error
        return QueryAnswer(flight.status, flight.body, BYPASS if unwatched else outcome)

    # ------------------------------------------------------------ status and life cycle
    def describe(self) -> dict[str, Any]:
        return {"url": self.url, **self.watch.state.as_dict(), "polls": self.polls, "query_cache": self.stats.as_dict()}

    async def start(self) -> None:
        await self.poll()
        st = self.watch.state
        if st.reachable:
            log.info("LightRAG %s ready at %s", st.core_version or "?", self.url)
        else:
            log.warning("LightRAG is not reachable at %s yet: /lightrag/ answers 502 until it is up", self.url)

    async def aclose(self) -> None:
        await self.client.aclose()
