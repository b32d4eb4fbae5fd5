"""What the agent measures: latency per endpoint and cache outcome, time to first
byte, what Ollama reports (tokens per second, load time, queueing), and rolling
time series for the dashboard. Recommendations are rules over these figures.

Everything runs on the event loop thread: recording is a few appends and one
histogram observation, with no lock contention; every series is bounded
(rolling windows and fixed rings, never an unbounded list).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.gateway.validate import INFERENCE_KINDS

if TYPE_CHECKING:
    from agent.runtime import Runtime

ENDPOINTS = tuple(INFERENCE_KINDS)  # the inference paths the gateway serves
SUGGESTION_ENDPOINTS = ("/api/generate", "/v1/completions")
OUTCOMES = ("miss", "hit-memory", "hit-disk", "hit-redis", "typeahead", "coalesced", "bypass")
HITS = ("hit-memory", "hit-disk", "hit-redis", "typeahead", "coalesced")
WINDOW = 2048  # latency samples kept per (endpoint, outcome) for percentiles
BUCKET_S = 10.0  # seconds per point of the dashboard's time series
BUCKETS = 360  # one hour of points
POWER_POINTS = 720  # power samples kept (an hour at 5 s, six at 30 s)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SUGGESTION_P95_LIMIT_S = 0.100
LOW_HIT_RATIO = 0.2
RELOADS_PER_HOUR_LIMIT = 3
QUEUED_SHARE_LIMIT = 0.2  # share of upstream calls sent while Ollama was busy
RAM_LOW_MB = 2048


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class Bucket:
    start: float
    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    suggestion: list[float] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        """The bucket's figures; for the current bucket a live view."""
        if self.summary is not None:
            return self.summary
        total = sum(self.counts.values())
        lookups = total - self.counts.get("bypass", 0)
        return {
            "t": self.start,
            "requests": total,
            "by_outcome": dict(self.counts),
            "p50": percentile(self.latencies, 50),
            "p95": percentile(self.latencies, 95),
            "p99": percentile(self.latencies, 99),
            "suggestion_p95": percentile(self.suggestion, 95),
            "hit_ratio": {o: (self.counts.get(o, 0) / lookups if lookups else None) for o in HITS},
        }

    def close(self) -> dict[str, Any]:
        """Freeze the figures and drop the samples behind them."""
        if self.summary is None:
            self.summary = self.view()
            self.latencies = []
            self.suggestion = []
        return self.summary


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "powergate_request_duration_seconds",
            "Time to answer a gateway request, by endpoint and cache outcome",
            ["endpoint", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttfb = Histogram(
            "powergate_time_to_first_byte_seconds",
            "Time to the first byte of the answer, streams included",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "powergate_requests",
            "Gateway requests answered",
            ["endpoint", "outcome", "status"],
            registry=self.registry,
        )
        self.upstream_tps = Histogram(
            "powergate_upstream_tokens_per_second",
            "Generation speed Ollama reported (eval_count / eval_duration)",
            buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320),
            registry=self.registry,
        )
        self.upstream_load = Histogram(
            "powergate_upstream_load_seconds",
            "Model load time Ollama reported (load_duration), when a load happened",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.windows: dict[tuple[str, str], deque[float]] = {}
        self.ttfb_window: dict[str, deque[float]] = {}
        self.buckets: deque[Bucket] = deque(maxlen=BUCKETS)
        self.power: deque[dict[str, Any]] = deque(maxlen=POWER_POINTS)
        self.loads: deque[tuple[float, float]] = deque(maxlen=256)  # (when, seconds) of model loads
        self.queued: deque[tuple[bool, float]] = deque(maxlen=256)  # (sent behind other calls, wall seconds)
        self.tps: deque[float] = deque(maxlen=WINDOW)
        self.suggestions: deque[tuple[float, float]] = deque(maxlen=WINDOW)  # (when, seconds) of answered suggestions
        self.started = time.time()

    # ------------------------------------------------------------ recording (hot path)
    def record(self, endpoint: str, outcome: str, status: int, seconds: float, ttfb: float | None) -> None:
        self.duration.labels(endpoint, outcome).observe(seconds)
        self.requests.labels(endpoint, outcome, str(status)).inc()
        w = self.windows.get((endpoint, outcome))
        if w is None:
            w = self.windows[(endpoint, outcome)] = deque(maxlen=WINDOW)
        w.append(seconds)
        if ttfb is not None:
            self.ttfb.labels(endpoint).observe(ttfb)
            tw = self.ttfb_window.get(endpoint)
            if tw is None:
                tw = self.ttfb_window[endpoint] = deque(maxlen=WINDOW)
            tw.append(ttfb)
        b = self._bucket(time.time())
        b.counts[outcome] = b.counts.get(outcome, 0) + 1
        if endpoint in SUGGESTION_ENDPOINTS and status == 200:
            self.suggestions.append((time.time(), seconds))
        if len(b.latencies) < WINDOW:
            b.latencies.append(seconds)
            if endpoint in SUGGESTION_ENDPOINTS and status == 200:
                b.suggestion.append(seconds)

    def _bucket(self, now: float) -> Bucket:
        start = now - now % BUCKET_S
        if not self.buckets or self.buckets[-1].start != start:
            if self.buckets:
                self.buckets[-1].close()
            self.buckets.append(Bucket(start))
        return self.buckets[-1]

    def record_upstream(self, doc: dict[str, Any], wall_s: float, queued: bool = False) -> None:
        """Ollama's own duration fields of a finished answer. Ollama counts time spent
        waiting for a busy runner as load time, so only calls that did not queue count
        as model loads."""
        try:
            eval_n = int(doc.get("eval_count") or 0)
            eval_ns = int(doc.get("eval_duration") or 0)
            load_ns = int(doc.get("load_duration") or 0)
            total_ns = int(doc.get("total_duration") or 0)
        except (TypeError, ValueError):
            return
        if eval_n and eval_ns:
            tps = eval_n / (eval_ns / 1e9)
            self.upstream_tps.observe(tps)
            self.tps.append(tps)
        if load_ns > 200_000_000 and not queued:  # a real load, not a warm model's bookkeeping
            self.upstream_load.observe(load_ns / 1e9)
            self.loads.append((time.time(), load_ns / 1e9))
        if total_ns or wall_s:
            self.queued.append((queued, wall_s))

    def record_power(self, snap: dict[str, Any], profile: str) -> None:
        self.power.append(
            {k: snap.get(k) for k in ("at", "percent", "plugged", "cpu_percent", "ram_available_mb", "battery_saver")}
            | {"profile": profile}
        )

    # ------------------------------------------------------------ reading
    def latency_table(self) -> list[dict[str, Any]]:
        rows = []
        for (endpoint, outcome), w in sorted(self.windows.items()):
            vals = list(w)
            rows.append(
                {
                    "endpoint": endpoint,
                    "outcome": outcome,
                    "count": len(vals),
                    "p50_ms": _ms(percentile(vals, 50)),
                    "p95_ms": _ms(percentile(vals, 95)),
                    "p99_ms": _ms(percentile(vals, 99)),
                }
            )
        return rows

    def series(self, since: float = 0.0) -> list[dict[str, Any]]:
        last = len(self.buckets) - 1
        return [b.view() if i == last else b.close() for i, b in enumerate(self.buckets) if b.start >= since]

    def suggestion_p95(self, window_s: float = 600.0) -> tuple[float | None, int]:
        cutoff = time.time() - window_s
        recent = [sec for t, sec in self.suggestions if t >= cutoff]
        return percentile(recent, 95), len(recent)

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def lightrag_metrics(d: dict[str, Any]) -> Any:
    """LightRAG's health, pipeline, corpus version and query cache as Prometheus families."""
    yield GaugeMetricFamily("powergate_lightrag_up", "1 when LightRAG answers", value=1 if d["reachable"] else 0)
    yield GaugeMetricFamily(
        "powergate_lightrag_pipeline_busy", "1 while LightRAG indexes", value=1 if d["pipeline_busy"] else 0
    )
    version = str(d["corpus_version"]).rpartition(".")[2]
    yield GaugeMetricFamily(
        "powergate_lightrag_corpus_version", "Corpus version in this run (moves on every change)", value=int(version)
    )
    queries = CounterMetricFamily("powergate_lightrag_queries", "LightRAG queries by cache outcome", labels=["outcome"])
    for outcome, n in d["query_cache"].items():
        queries.add_metric([outcome], n)
    yield queries
    docs = GaugeMetricFamily("powergate_lightrag_documents", "LightRAG documents by status", labels=["status"])
    for status, n in d["status_counts"].items():
        docs.add_metric([status], n)
    yield docs


class StateCollector(Collector):
    """Cache tiers, counters and power as Prometheus metrics, read at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Any:
        rt = self.rt
        hits = CounterMetricFamily("powergate_cache_hits", "Cache hits per tier", labels=["tier"])
        misses = CounterMetricFamily("powergate_cache_misses", "Cache misses per tier", labels=["tier"])
        evictions = CounterMetricFamily("powergate_cache_evictions", "Entries evicted per tier", labels=["tier"])
        size = GaugeMetricFamily("powergate_cache_bytes", "Bytes held per tier", labels=["tier"])
        entries = GaugeMetricFamily("powergate_cache_entries", "Entries per tier", labels=["tier"])
        up = GaugeMetricFamily("powergate_cache_tier_available", "1 when the tier answers", labels=["tier"])
        for t in rt.cache.tiers:
            st = t.st
            hits.add_metric([st.name], st.hits)
            misses.add_metric([st.name], st.misses)
            evictions.add_metric([st.name], st.evictions)
            size.add_metric([st.name], st.bytes)
            entries.add_metric([st.name], st.entries)
            up.add_metric([st.name], 1 if st.available else 0)
        yield from (hits, misses, evictions, size, entries, up)
        yield CounterMetricFamily(
            "powergate_typeahead_hits",
            "Answers given from a suggestion the user typed into",
            value=rt.cache.typeahead.hits,
        )
        yield CounterMetricFamily(
            "powergate_coalesced", "Requests that shared another request's upstream call", value=rt.cache.coalesced
        )
        yield CounterMetricFamily(
            "powergate_model_reloads_avoided",
            "Requests whose runner options would have made Ollama reload",
            value=rt.reloads_avoided,
        )
        yield CounterMetricFamily(
            "powergate_model_unloads", "Models powergate asked Ollama to unload", value=rt.unloads
        )
        for name, help_text in (
            ("prefetch_issued", "Prefetches sent to Ollama"),
            ("prefetch_used", "Prefetched answers served"),
            ("prefetch_wasted", "Prefetches never used"),
            ("dropped_before_upstream", "Requests dropped because their client left before they ran"),
        ):
            value = rt.scheduling_stats()[name] if name == "dropped_before_upstream" else rt.counters.get(name, 0)
            yield CounterMetricFamily(f"powergate_{name}", help_text, value=value)
        prof = GaugeMetricFamily(
            "powergate_profile", "The profile in force (1) and its mode", labels=["profile", "mode"]
        )
        prof.add_metric([rt.controller.profile.name, rt.controller.mode], 1)
        yield prof
        if rt.lightrag is not None:
            yield from lightrag_metrics(rt.lightrag.describe())
        ups = GaugeMetricFamily("powergate_upstream_up", "1 when Ollama at this URL answers", labels=["url"])
        for u in rt.upstreams.upstreams:
            ups.add_metric([u.url], 1 if u.health.reachable else 0)
        yield ups
        db = rt.database
        if db is not None:
            yield GaugeMetricFamily(
                "powergate_db_up", "1 when the [postgres] database answers", value=1 if db.reachable else 0
            )
            yield GaugeMetricFamily(
                "powergate_db_findings", "Findings of the last database check", value=len(db.findings)
            )
            if db.connections is not None:
                yield GaugeMetricFamily("powergate_db_connections", "Client connections in use", value=db.connections)
            if db.max_connections is not None:
                yield GaugeMetricFamily(
                    "powergate_db_max_connections", "The server's max_connections", value=db.max_connections
                )
            if db.applied_ef is not None:
                yield GaugeMetricFamily(
                    "powergate_db_ef_search", "hnsw.ef_search set for the role by the profile", value=db.applied_ef
                )
        decisions = CounterMetricFamily(
            "powergate_route_decisions", "Which host was chosen for a request, and why", labels=["url", "reason"]
        )
        for (url, reason), n in sorted(rt.upstreams.decisions.items()):
            decisions.add_metric([url, reason], n)
        yield decisions
        state = GaugeMetricFamily(
            "powergate_upstream_state",
            "Each host's circuit-breaker state (1 for the current one)",
            labels=["url", "state"],
        )
        for url, record in rt.upstreams.records.items():
            state.add_metric([url, record.breaker.state.value], 1)
        yield state
        yield CounterMetricFamily(
            "powergate_upstream_retries",
            "Requests retried on another host before their answer began",
            value=rt.upstreams.retries,
        )
        p = rt.controller.power
        if p is not None:
            if p.percent is not None:
                yield GaugeMetricFamily("powergate_battery_percent", "Battery charge", value=p.percent)
            yield GaugeMetricFamily("powergate_on_ac", "1 on the charger", value=1 if p.plugged else 0)
            yield GaugeMetricFamily("powergate_cpu_percent", "Machine CPU use", value=p.cpu_percent)
            yield GaugeMetricFamily(
                "powergate_ram_available_bytes", "Available RAM", value=p.ram_available_mb * 1024 * 1024
            )


def recommendations(rt: Runtime) -> list[dict[str, Any]]:
    """What the user could do, each with the figure that triggered it."""
    m = rt.metrics
    out: list[dict[str, Any]] = []
    p = rt.controller.profile

    p95, n = m.suggestion_p95()
    if p95 is not None and n >= 20 and p95 > SUGGESTION_P95_LIMIT_S:
        out.append(
            {
                "id": "slow-suggestions",
                "severity": "warning",
                "message": (
                    f"Suggestions take {p95 * 1000:.0f} ms at p95 (over {SUGGESTION_P95_LIMIT_S * 1000:.0f} ms): use a smaller "
                    f'autocomplete model ([profiles.{p.name}] autocomplete = "small") and keep the cache on; '
                    "a larger memory cache keeps more answers instant."
                ),
                "figure": {
                    "name": "suggestion_p95_ms",
                    "value": round(p95 * 1000, 1),
                    "threshold": SUGGESTION_P95_LIMIT_S * 1000,
                    "samples": n,
                },
            }
        )

    mem = rt.cache.memory
    lookups = mem.st.hits + mem.st.misses
    if lookups >= 50:
        ratio = (mem.st.hits + (rt.cache.disk.st.hits if rt.cache.disk else 0)) / lookups
        full = mem.max_bytes and mem._bytes >= 0.9 * mem.max_bytes
        if ratio < LOW_HIT_RATIO and (full or mem.st.evictions > 0):
            out.append(
                {
                    "id": "grow-memory-cache",
                    "severity": "info",
                    "message": (
                        f"The cache answers only {ratio:.0%} of requests and the memory tier is full "
                        f"({mem.max_bytes // (1024 * 1024)} MB, {mem.st.evictions} evictions): raise memory_mb in [profiles.{p.name}] or [cache]."
                    ),
                    "figure": {
                        "name": "hit_ratio",
                        "value": round(ratio, 3),
                        "threshold": LOW_HIT_RATIO,
                        "evictions": mem.st.evictions,
                    },
                }
            )

    hour_ago = time.time() - 3600
    reloads = [s for t, s in m.loads if t >= hour_ago]
    if len(reloads) >= RELOADS_PER_HOUR_LIMIT:
        out.append(
            {
                "id": "model-reloads",
                "severity": "warning",
                "message": (
                    f"Ollama loaded models {len(reloads)} times in the last hour ({sum(reloads):.0f} s spent loading): "
                    f"raise keep_alive in [profiles.{p.name}] (now {p.keep_alive}) and keep one num_ctx for all your tools."
                ),
                "figure": {"name": "model_loads_last_hour", "value": len(reloads), "threshold": RELOADS_PER_HOUR_LIMIT},
            }
        )

    power = rt.controller.power
    if power is not None and (rt.memory_pressure or (power.ram_available_mb and power.ram_available_mb < RAM_LOW_MB)):
        out.append(
            {
                "id": "ram-pressure",
                "severity": "warning",
                "message": (
                    f"Only {power.ram_available_mb:.0f} MB of RAM are free: use smaller models ([models] medium/large) "
                    "and fewer loaded at once (OLLAMA_MAX_LOADED_MODELS=1)."
                ),
                "figure": {"name": "ram_available_mb", "value": round(power.ram_available_mb), "threshold": RAM_LOW_MB},
            }
        )

    calls = list(m.queued)
    behind = [w for q, w in calls if q]
    share = len(behind) / len(calls) if calls else 0.0
    if len(calls) >= 20 and share >= QUEUED_SHARE_LIMIT:
        out.append(
            {
                "id": "upstream-queueing",
                "severity": "info",
                "message": (
                    f"{share:.0%} of the calls to Ollama had to wait for another one to finish: if your machine has the "
                    "memory, set OLLAMA_NUM_PARALLEL=2 (and [[upstream]] max_concurrency = 2)."
                ),
                "figure": {
                    "name": "queued_share",
                    "value": round(share, 3),
                    "threshold": QUEUED_SHARE_LIMIT,
                    "calls": len(calls),
                },
            }
        )
    if rt.database is not None:
        out.extend(database_recommendations(rt.database.findings))
    return out


def database_recommendations(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last `db check` findings of the [postgres] database, as recommendations."""
    out = []
    for f in findings:
        fix = "; ".join(f["sql"]) or "; ".join(f["env"]) or "; ".join(f["advice"])
        out.append(
            {
                "id": f"db-{f['id']}",
                "severity": f["severity"],
                "message": f"{f['message']} Fix: {fix}" + (" (`powergate db apply` runs it)" if f["sql"] else ""),
                "figure": {"name": f["id"], "value": f["subject"], "evidence": f["evidence"]},
            }
        )
    return out


async def metrics_document(rt: Runtime) -> dict[str, Any]:
    m = rt.metrics
    tiers = [t.as_dict() for t in await rt.cache.stats()]
    for t in tiers:
        looked = t["hits"] + t["misses"]
        t["hit_ratio"] = round(t["hits"] / looked, 4) if looked else None
    tps = list(m.tps)
    return {
        "profile": rt.controller.profile.name,
        "mode": rt.controller.mode,
        "interval_s": rt.controller.profile.interval_s,
        "latency": m.latency_table(),
        "ttfb": {
            e: {"p50_ms": _ms(percentile(list(w), 50)), "p95_ms": _ms(percentile(list(w), 95)), "count": len(w)}
            for e, w in m.ttfb_window.items()
        },
        "upstream": {
            "tokens_per_second_p50": percentile(tps, 50),
            "loads_last_hour": sum(1 for t, _ in m.loads if t >= time.time() - 3600),
            "queued_share": round(sum(1 for q, _ in m.queued if q) / len(m.queued), 3) if m.queued else None,
            "health": [u.describe() for u in rt.upstreams.upstreams],
        },
        "cache": {
            "tiers": tiers,
            "typeahead_hits": rt.cache.typeahead.hits,
            "coalesced": rt.cache.coalesced,
            "paused": rt.controller.cache_paused,
        },
        "counters": {"reloads_avoided": rt.reloads_avoided, "unloads": rt.unloads, "capped": rt.capped, **rt.counters},
        "scheduling": rt.scheduling_stats(),
        "lightrag": rt.lightrag.describe() if rt.lightrag is not None else None,
        "series": m.series(),
        "power": list(m.power),
        "timeline": [
            {
                "at": h.at,
                "previous": h.previous,
                "profile": h.profile,
                "mode": h.mode,
                "reason": h.reason,
                "source": h.source,
            }
            for h in rt.controller.history
        ],
        "recommendations": recommendations(rt),
    }


class MetricsMiddleware:
    """Times every inference request end to end, with its cache outcome from the
    X-Powergate-Cache header and the time to its first body byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in ENDPOINTS:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0
        outcome = "bypass"
        first: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, outcome, first
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    if k == b"x-powergate-cache":
                        outcome = v.decode()
                        break
            elif message["type"] == "http.response.body" and first is None and message.get("body"):
                first = time.perf_counter() - t0
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if status:
                self.metrics.record(scope["path"], outcome, status, time.perf_counter() - t0, first)


def parse_final(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
