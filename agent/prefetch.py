"""Prefetching, at the level the profile allows (off / warm / speculative).

- warm: when the editor becomes active after an idle period (the first request,
  or one after `IDLE_S` of silence) and the profile's autocomplete model is not
  loaded (per /api/ps), preload it with an empty-prompt generate and the
  profile's keep_alive, so the next suggestion does not pay the load. On battery
  the profile's short keep_alive lets it go again when the user stops.
- speculative: after serving a completion, ask in the background for the one
  that follows if the user accepts it (prompt + completion, same suffix), at the
  lowest priority and only while no foreground work waits. It runs as a normal
  flight: stored in the cache when it finishes, joined (and promoted) if the
  user's request arrives while it runs, cancelled the moment other foreground
  work needs the slot. Issued, used and wasted prefetches are counted, and a
  guess is only made while guesses for that model pay for themselves
  (agent/speculation.py: a measured used share, with a probe now and then).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from agent.cache import typeahead
from agent.cache.keys import answer_fields, request_key
from agent.errors import ModelNotFound
from agent.profiles import Profile
from agent.savings import entry_model_seconds
from agent.speculation import SpeculationGate
from agent.upstreams.scheduling import BULK, PREFETCH

if TYPE_CHECKING:
    from agent.journey.flights import Flight
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

IDLE_S = 300.0  # seconds without requests after which the editor counts as idle
MAX_PREFETCH_PROMPT = 64_000  # characters; beyond this a guess is too expensive


def is_fim(body: dict[str, Any]) -> bool:
    """A fill-in-the-middle request: how editors ask for suggestions (a suffix, or raw FIM)."""
    return body.get("suffix") is not None or bool(body.get("raw"))


def next_prompt(body: dict[str, Any], completion: str) -> str | None:
    """The prompt the editor sends once the user accepts `completion`."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not completion:
        return None
    if body.get("raw"):
        fim = typeahead.split_fim(prompt)
        if fim is None:
            return prompt + completion
        prefix, (_name, head, tail) = fim
        return head + prefix + completion + tail
    return prompt + completion


class Prefetcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.last_request = 0.0
        self.counters = rt.counters
        for k in ("prefetch_issued", "prefetch_used", "prefetch_wasted", "warmups"):
            self.counters.setdefault(k, 0)
        self.gate = SpeculationGate(self.counters)

    # ------------------------------------------------------------ warm
    def touch(self, profile: Profile) -> None:
        """Every inference request: warm the autocomplete model after an idle period."""
        now = time.monotonic()
        idle = self.last_request == 0.0 or now - self.last_request > IDLE_S
        self.last_request = now
        if idle and profile.prefetch in ("warm", "speculative"):
            self.rt.spawn(self.warm(profile))

    async def warm(self, profile: Profile) -> bool:
        model = self.rt.settings.models.for_tier(profile.autocomplete)
        try:
            up = self.rt.upstreams.route(model).first  # the host the next suggestion will go to
        except ModelNotFound:
            return False
        loaded = await up.loaded_models()
        if any(m == model or m == f"{model}:latest" or m.removesuffix(":latest") == model for m in loaded):
            return False
        # the context the next request will be sent with, so the warm runner is the one it uses
        opts: dict[str, Any] = {"num_ctx": self.rt.contexts.choose(model, profile, None).sent}
        threads = profile.resolved_num_thread()
        if threads:
            opts["num_thread"] = threads
        try:
            async with up.scheduler.slot(BULK):
                warmed = await up.load(model, profile.keep_alive, opts)
        except Exception as exc:  # warming is best effort
            log.debug("warm-up of %s failed: %s", model, exc)
            return False
        if warmed:
            self.counters["warmups"] += 1
            log.info("warmed up %s for the next suggestion", model)
            return True
        return False

    # ------------------------------------------------------------ speculative
    def after_completion(
        self,
        chunks: list[bytes],
        model: str,
        body: dict[str, Any],
        api: str,
        path: str,
        headers: dict[str, str],
        profile: Profile,
    ) -> None:
        """A completion was served (from Ollama, the cache or typeahead): guess the next
        one, if the profile and the queue allow."""
        self.gate.served(model)  # open guesses this suggestion passed over
        if profile.prefetch != "speculative" or not chunks:
            return
        from agent.cache.answers import completion_text

        try:
            completion = completion_text(api, chunks)
        except (ValueError, KeyError):
            return
        prompt = next_prompt(body, completion)
        if prompt is None or len(prompt) > MAX_PREFETCH_PROMPT:
            return
        try:
            route = self.rt.upstreams.route(model)  # the host that will serve the next request
        except ModelNotFound:
            return
        up = route.first
        if up.scheduler.foreground_waiting:
            return  # only when nothing in the foreground waits
        nbody = dict(body, prompt=prompt)
        key = request_key(api, model, nbody)
        if self.rt.cache.lookup_memory(key) is not None or self.rt.flights.get(key) is not None:
            return
        if not self.gate.allow(model):
            return  # this model's guesses have not been paying off lately
        probe = typeahead.probe_for(api, model, nbody, answer_fields(nbody))
        nf = self.rt.flights.start(
            key, api, model, route, path, dict(nbody, stream=False), headers, whole=True, priority=PREFETCH
        )
        nf.prefetch = True
        if probe is not None:
            self.rt.flights.add_guess(probe.family, probe.prefix, nf)
        self.counters["prefetch_issued"] += 1
        self.gate.issued(key, model)

        def stored(f: Flight) -> None:
            from agent.cache.answers import completion_text as text_of
            from agent.cache.base import Entry

            entry = Entry(f.api, f.model, list(f.chunks), meta={"form": "whole", "prefetched": True})
            self.rt.cache.store(f.key, entry)
            if probe is not None:
                self.rt.cache.typeahead.add(probe, text_of(f.api, entry.chunks), f.key)

        def finished(f: Flight) -> None:
            if f.complete:
                self.gate.cost(f.model, entry_model_seconds(f.chunks, {"model_s": f.wall_s}), guess=True)
            if not f.promoted:  # a promoted guess was counted as used when it was joined
                self.gate.finished(f.key, f.complete)

        nf.on_complete = stored
        nf.on_done = finished

    def used(self, meta: dict[str, Any], key: str) -> None:
        """A request answered from a prefetched entry (a hit, or typeahead into it): the
        guess paid off (counted once)."""
        if meta.get("prefetched") and not meta.get("used"):
            meta["used"] = True
            self.gate.used(key)

    def promoted(self, flight: Flight) -> None:
        """The user's own request joined a running prefetch: it is foreground work now."""
        if flight.prefetch and not flight.promoted:
            flight.promoted = True
            self.gate.used(flight.key)
            if flight.ticket is not None:
                flight.ticket.priority = 0  # AUTOCOMPLETE: no longer preemptable

    def describe(self) -> dict[str, Any]:
        return self.gate.describe()
