"""Stage 4: schedule the request on an upstream and send it (a flight others can join).

A flight asks the upstream in the client's mode: a whole answer costs the server
and us less to transfer; either form is stored and replayed in both forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.cache import typeahead
from agent.cache.answers import completion_text, is_sse
from agent.cache.base import Entry
from agent.journey.flights import Flight
from agent.journey.lookup import CachePlan
from agent.journey.preempt import PauseState, resumable
from agent.journey.request import InferenceRequest
from agent.journey.speculate import guess_next
from agent.metrics import parse_final
from agent.savings import entry_model_seconds
from agent.upstreams.scheduling import AUTOCOMPLETE

if TYPE_CHECKING:
    from agent.runtime import Runtime


def upstream_body(req: InferenceRequest) -> dict[str, Any]:
    body = dict(req.body, stream=req.stream)
    if req.openai and req.stream:
        body["stream_options"] = {"include_usage": True}  # usage is stored, whatever this client wants
    return body


def pause_state(upstream_kind: str, req: InferenceRequest, body: dict[str, Any]) -> PauseState | None:
    """Streamed generations of a kind the server continues may be paused for a suggestion."""
    if req.stream and req.priority != AUTOCOMPLETE and resumable(upstream_kind, req.path, body):
        return PauseState(req.path, body)
    return None


def upstream_headers(req: InferenceRequest) -> dict[str, str]:
    return dict(req.forward, **{"content-type": "application/json"})


def typist(req: InferenceRequest, probe: typeahead.Probe | None) -> tuple[str, str]:
    """Who is typing (for superseding their older completions) and what they typed so far."""
    if probe is None:
        return "", ""
    http = req.http
    host = http.client.host if http.client else ""
    return f"{host}|{http.headers.get('user-agent', '')}|{probe.family}", probe.prefix


def depart(req: InferenceRequest, rt: Runtime, cp: CachePlan) -> Flight:
    """Start the upstream call for a cacheable request; it stores its answer when complete."""
    client, prefix = typist(req, cp.probe)
    route = rt.upstreams.route(req.model)  # the hosts to try, best first
    upstream = route.first
    body = upstream_body(req)
    flight = rt.flights.start(
        cp.key,
        req.api,
        req.model,
        route,
        req.path,
        body,
        upstream_headers(req),
        register=not req.no_read,
        whole=not req.stream,
        priority=req.priority,
        client=client,
        prefix=prefix,
        pause=pause_state(upstream.kind, req, body),
    )
    flight.on_finished = lambda f: record_upstream(rt, f)
    if not req.no_store:
        flight.on_complete = lambda f: store(rt, f, cp.probe)
    # once answered, guess the next completion (speculative profiles, FIM requests)
    flight.on_done = lambda f: guess_next(req, rt, f.chunks, f.model) if f.complete else None
    return flight


def record_upstream(rt: Runtime, flight: Flight) -> None:
    doc = parse_final(flight.chunks[-1]) if flight.chunks else None
    if doc is not None and not is_sse(flight.api):
        rt.metrics.record_upstream(doc, flight.wall_s, flight.queued)
        rt.upstreams.record_answer(flight.upstream_url, flight.model, doc, flight.queued)
    elif doc is not None and not flight.queued:
        # OpenAI answers carry no durations: the measured times, when it did not wait for a slot
        tokens = (
            int((doc.get("usage") or {}).get("completion_tokens") or 0) if isinstance(doc.get("usage"), dict) else 0
        )
        first = flight.first_chunk_at - flight.started_at if flight.first_chunk_at else None
        rt.upstreams.record_wall(flight.upstream_url, flight.model, first, tokens, flight.wall_s - (first or 0.0))
    model_s = entry_model_seconds(flight.chunks, {"model_s": flight.wall_s})
    if flight.priority == AUTOCOMPLETE and flight.complete and not flight.prefetch:
        rt.prefetcher.gate.cost(flight.model, model_s, guess=False)  # what a used guess would spare
    # each follower of a coalesced call got this answer without its own model run
    rt.savings.model_time(flight.followers * model_s)


def store(rt: Runtime, flight: Flight, probe: typeahead.Probe | None) -> None:
    meta: dict[str, Any] = {"form": "whole"} if flight.whole else {}
    meta["model_s"] = round(flight.wall_s, 4)  # what a hit saves when the answer has no total_duration
    entry = Entry(flight.api, flight.model, list(flight.chunks), meta=meta)
    rt.cache.store(flight.key, entry)
    if probe is not None:
        rt.cache.typeahead.add(probe, completion_text(flight.api, entry.chunks), flight.key)
