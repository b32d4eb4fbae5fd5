"""The configured upstreams, which kind each is, and which one serves a request.

Per request the pool ranks the hosts that have the model (agent.upstreams.choice,
scored by agent.upstreams.scoring) and hands the journey a `Route`: the hosts to
try, best first. A call that fails before its first byte reached the client
(connection refused or reset, 503 busy) is tried once more on the next host of its
route (`MAX_ATTEMPTS`); after the first byte, never: the client would see a
duplicate. Failures feed each host's circuit breaker (agent.upstreams.breaker);
answers feed its recent speeds. Background checks (`refresh`) run at the
profile's sampling interval, never on the request path.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.config import UpstreamSettings
from agent.errors import UpstreamError, UpstreamRefused, UpstreamUnavailable
from agent.power.base import PowerSnapshot
from agent.upstreams.base import HEALTH_TIMEOUT, Upstream
from agent.upstreams.breaker import HostState, refresh
from agent.upstreams.choice import HostRecord, choose, describe_scores
from agent.upstreams.health import UpstreamHealth
from agent.upstreams.llamacpp import LlamaCppUpstream
from agent.upstreams.ollama import OllamaUpstream
from agent.upstreams.openai import OpenAIUpstream
from agent.upstreams.scheduling import Scheduler
from agent.upstreams.scoring import Power

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # the chosen host, then once the next candidate
BUSY_STATUS = 503  # Ollama's "server busy": its queue is full, another host may take the request
SAVER_PROFILE = "battery-saver"
# "score": powergate's routing. The others exist for the bench's comparison only:
# "round-robin" (each host in turn) and "weight" (the highest-weight reachable host,
# powergate's behaviour before hosts were scored).
STRATEGIES = ("score", "round-robin", "weight")
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


def retryable(exc: BaseException | None, status: int | None) -> bool:
    """A failure that happened before the answer began: another host may serve it."""
    return isinstance(exc, UpstreamUnavailable) or status == BUSY_STATUS


@dataclass
class Route:
    """The hosts one request may use, best first, and why the first was chosen."""

    hosts: list[Upstream]
    reason: str
    pool: UpstreamPool | None = None
    tried: list[str] = field(default_factory=list)
    model: str = ""

    @property
    def first(self) -> Upstream:
        return self.hosts[0]

    def alternates(self, up: Upstream) -> tuple[str, ...]:
        return tuple(h.url for h in self.hosts if h is not up)

    def next_after(self, up: Upstream) -> Upstream | None:
        """The host for the one retry: the best one not tried yet."""
        if len(self.tried) >= MAX_ATTEMPTS:
            return None
        return next((h for h in self.hosts if h.url not in self.tried and h is not up), None)

    def host(self, url: str) -> Upstream:
        return next(h for h in self.hosts if h.url == url)

    def attempt(self, up: Upstream) -> None:
        """A call starts on `up` (several calls of one request on the same host count once)."""
        if up.url in self.tried:
            return
        self.tried.append(up.url)
        if len(self.tried) > 1 and self.pool is not None:
            self.pool.retries += 1

    def failed(self, up: Upstream, exc: BaseException | None, status: int | None = None) -> None:
        if self.pool is not None:
            self.pool.note_failure(up, exc, status)

    def answered(self, up: Upstream) -> None:
        if self.pool is not None:
            self.pool.note_success(up, self.model)


class _Probe:
    """A background check of one backend, in the shape the breaker's `refresh` asks for."""

    def __init__(self, up: Upstream) -> None:
        self.up = up

    async def check(self) -> str:
        health = await self.up.check()
        if not health.reachable:
            raise UpstreamRefused(health.error or f"{self.up.url} did not answer", url=self.up.url)
        return health.version

    async def list_models(self) -> Mapping[str, float | None] | None:
        return await self.up.list_models()

    async def loaded_models(self) -> frozenset[str] | None:
        return frozenset(await self.up.loaded_models())


class UpstreamPool:
    def __init__(self, settings: tuple[UpstreamSettings, ...]) -> None:
        self.upstreams = [make_upstream(s) for s in settings]
        self.records = {
            u.url: HostRecord(u.url, local=s.is_local, weight=s.weight, order=i)
            for i, (u, s) in enumerate(zip(self.upstreams, settings, strict=True))
        }
        self.power = Power.AC
        self.strategy = "score"
        self._turn = itertools.count()
        self.decisions: Counter[tuple[str, str]] = Counter()  # (host URL, reason) of each choice
        self.retries = 0
        self.moved = 0
        for u in self.upstreams:
            u.scheduler.on_free = self._on_free

    # ------------------------------------------------------------ choosing
    def pick(self) -> Upstream:
        """For calls that are not about a model (version, pass-through): the heaviest host that may serve."""
        serving = [u for u in self.upstreams if self.records[u.url].breaker.serves()]
        candidates = [u for u in serving if u.health.reachable is not False] or serving or self.upstreams
        return max(candidates, key=lambda u: u.settings.weight)

    def _load(self, url: str) -> tuple[int, int, int]:
        s = self._by_url(url).scheduler
        return len(s.running), len(s.waiting), s.slots

    def _by_url(self, url: str) -> Upstream:
        return next(u for u in self.upstreams if u.url == url)

    def route(self, model: str) -> Route:
        """The hosts for one request for `model`, best first (ModelNotFound when no host has it)."""
        if len(self.upstreams) == 1:
            # One host: its own answer is the authority, a 404 included.
            return self._decided(Route([self.upstreams[0]], "only", self), model)
        if self.strategy == "weight":
            return self._decided(Route([self.pick()], "weight", self), model)
        records = list(self.records.values())
        if self.strategy == "round-robin":
            serving = [r for r in records if r.breaker.serves() and r.has(model) is not False] or records
            turn = next(self._turn) % len(serving)
            urls = [r.url for r in serving[turn:] + serving[:turn]]
            return self._decided(Route([self._by_url(u) for u in urls], "round-robin", self), model)
        choice = choose(records, model, self.power, self._load)
        return self._decided(Route([self._by_url(u) for u in choice.urls], choice.reason, self), model)

    def _decided(self, route: Route, model: str) -> Route:
        route.model = model
        self.decisions[(route.first.url, route.reason)] += 1
        self.records[route.first.url].served[route.reason] += 1
        return route

    def _on_free(self, free: Scheduler) -> None:
        """A slot of one host stays free: a suggestion waiting at another host that it could
        serve moves here (the newest first: the one the user looks at)."""
        record = self.records.get(free.name)
        if record is None or not record.breaker.serves():
            return
        room = free.slots - len(free.running) - len(free.waiting)
        for other in self.upstreams:
            if room <= 0:
                return
            if other.scheduler is free:
                continue
            ticket = other.scheduler.movable(free.name)
            if ticket is not None:
                other.scheduler.withdraw(ticket, free.name)
                self.moved += 1
                room -= 1

    # ------------------------------------------------------------ what requests teach us
    def note_failure(self, up: Upstream, exc: BaseException | None, status: int | None = None) -> None:
        record = self.records[up.url]
        hard = isinstance(exc, UpstreamRefused)
        what = str(exc) if exc is not None else f"answered {status}"
        if record.breaker.failed(what, hard=hard):
            log.warning(
                "model host %s failed (%s): no request goes there for %.1f s",
                up.url,
                what,
                max(0.0, record.breaker.rest_until - time.time()),
            )

    def note_success(self, up: Upstream, model: str = "") -> None:
        record = self.records[up.url]
        if record.breaker.state is not HostState.UP:
            record.breaker.succeeded()
        # It answered with the model: the model is in its memory now (what it let go to make
        # room, the next background check tells).
        if model and record.info.loaded is not None and model not in record.info.loaded:
            record.info.loaded = record.info.loaded | {model}

    def record_answer(self, url: str, model: str, doc: Mapping[str, Any], queued: bool) -> None:
        """An answer's own duration fields (Ollama's final chunk)."""
        record = self.records.get(url)
        if record is not None:
            record.speed.record_durations(model, doc, queued)

    def record_wall(self, url: str, model: str, ttft_s: float | None, tokens: int, generate_s: float) -> None:
        """Measured times, for answers that carry no durations (OpenAI dialect)."""
        record = self.records.get(url)
        if record is not None:
            record.speed.record_wall(model, ttft_s, tokens, generate_s)

    # ------------------------------------------------------------ power and checks
    def observe(self, snap: PowerSnapshot, profile_name: str, interval_s: float) -> None:
        """A power sample: the policy's view for routing, the rest length, the laptop's free RAM."""
        self.power = Power.of(snap.plugged, saver=profile_name == SAVER_PROFILE or snap.battery_saver)
        for r in self.records.values():
            r.breaker.rest_s = interval_s
            if r.local:
                r.free_memory_mb = snap.ram_available_mb if snap.ram_available_mb > 0 else None

    async def refresh(self) -> None:
        """The background check of every host (its breaker decides whether it is asked)."""
        await asyncio.gather(*(self._refresh_one(i) for i in range(len(self.upstreams))))

    async def _refresh_one(self, i: int) -> None:
        up = self.upstreams[i]
        record = self.records[up.url]
        if not up.kind_known and (record.breaker.serves() or record.breaker.rest_over()):
            up = await self._resolve_kind(i)
        try:
            await refresh(_Probe(up), record.breaker, record.info)
        except UpstreamError as exc:  # a half-answered check (tags or ps failed)
            record.breaker.failed(str(exc), hard=False)

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

    # ------------------------------------------------------------ reading
    def describe(self, model: str) -> list[dict[str, Any]]:
        """Each host: its backend's health, its breaker state, what it holds, and its score for `model`."""
        scores = describe_scores(list(self.records.values()), model, self.power, self._load)
        out = []
        for up, score in zip(self.upstreams, scores, strict=True):
            doc = up.describe()
            record = self.records[up.url]
            doc.update({"local": record.local, "models": record.info.as_dict(), "routing": score})
            out.append(doc)
        return out

    def routing_stats(self) -> dict[str, Any]:
        by_reason: Counter[str] = Counter()
        for (_, reason), n in self.decisions.items():
            by_reason[reason] += n
        return {
            "strategy": self.strategy,
            "power": self.power.value,
            "decisions": dict(by_reason),
            "by_host": {url: dict(r.served) for url, r in self.records.items()},
            "retries": self.retries,
            "moved": self.moved,
        }

    async def aclose(self) -> None:
        for u in self.upstreams:
            await u.aclose()
