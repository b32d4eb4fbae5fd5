"""Stage 2: answers that need no model: the layered cache, then typeahead.

Typeahead: the user typed on into a completion we served; the rest of it is the
answer (see agent.cache.typeahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.responses import Response

from agent.cache import typeahead
from agent.cache.answers import completion_text, synth_completion
from agent.cache.base import Entry
from agent.cache.keys import COMPLETION_APIS, answer_fields, cacheable, request_key
from agent.gateway import lanes
from agent.gateway.responses import H_CACHE
from agent.journey.answer import replay
from agent.journey.request import TYPEAHEAD, InferenceRequest
from agent.journey.speculate import guess_next

if TYPE_CHECKING:
    from agent.runtime import Runtime


@dataclass(frozen=True)
class CachePlan:
    key: str  # the cache key of this request's answer
    probe: typeahead.Probe | None  # completions only: what typeahead matches on


def plan(req: InferenceRequest, rt: Runtime) -> CachePlan | None:
    """How the cache takes part in this request; None when it must not (bypass)."""
    use_cache = (
        not rt.controller.cache_paused
        and cacheable(req.api, req.body, lanes.cache_chat_mode(req.http, rt.settings.cache.chat))
        and not (req.no_read and req.no_store)
    )
    if not use_cache:
        return None
    key = request_key(req.api, req.model, req.body)
    probe = None
    if req.api in COMPLETION_APIS:
        probe = typeahead.probe_for(req.api, req.model, req.body, answer_fields(req.body))
    return CachePlan(key, probe)


async def lookup(req: InferenceRequest, rt: Runtime, cp: CachePlan) -> Response | None:
    """A stored answer or a typeahead continuation, in the client's form; None on a miss."""
    if req.no_read:
        return None
    cache = rt.cache
    entry, outcome = await cache.lookup(cp.key)
    if entry is not None:
        rt.prefetcher.used(entry.meta, cp.key)
        if cp.probe is not None:
            cache.typeahead.add(cp.probe, completion_text(req.api, entry.chunks), cp.key)
            guess_next(req, rt, entry.chunks, req.model)
        req.headers[H_CACHE] = outcome
        return replay(entry, req.api, req.stream, req.include_usage, req.headers)
    if cp.probe is None:
        return None
    found = cache.typeahead.lookup(cp.probe)
    if found is None:
        return None
    rest, rec = found
    source = cache.lookup_memory(rec.entry_key)
    if source is None:
        return None
    synth = Entry(req.api, req.model, synth_completion(req.api, req.model, rest, source.chunks))
    rt.prefetcher.used(source.meta, rec.entry_key)
    guess_next(req, rt, synth.chunks, req.model)
    req.headers[H_CACHE] = TYPEAHEAD
    return replay(synth, req.api, req.stream, req.include_usage, req.headers)
