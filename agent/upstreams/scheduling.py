"""Interactive-first scheduling of upstream work.

Ollama runs one generation at a time per runner; while a chat answer or an
indexing batch runs, the editor's next suggestion waits behind it. Every call
powergate makes to an Ollama goes through that upstream's scheduler:

- `max_concurrency` slots (default 1, like Ollama);
- priorities: autocomplete/FIM > chat > embeddings and other bulk > prefetch;
  within autocomplete the newest first, and an older queued completion from the
  same client that the newer one extends is superseded (also when the editor's prompt
  window dropped lines from its top meanwhile): it does not run on its own, its owner
  is told which newer request extends it (and answers from that one, or runs after all
  when that one fails or is aborted);
- ageing: every `AGE_STEP_S` a request waits lifts it one class, so nothing starves;
- a bounded queue as deep as Ollama's (`OLLAMA_MAX_QUEUE`, 512): past `max_queue` waiting
  (per `[[upstream]]`), a clear UpstreamBusy (503 + Retry-After). The official clients do not
  retry a 503, so the bound must not be smaller than what Ollama itself would have queued;
- a waiter whose client left is simply cancelled: it never reaches Ollama;
- a running prefetch is cancelled as soon as foreground work waits for its slot;
- preemption: a suggestion that finds every slot busy with a lower class that is
  generating (chat, bulk) asks one of them to pause (see agent/journey/preempt.py:
  the holder closes its upstream request, gives the slot back with `requeue`, and
  resumes as a continuation when the slot is its again); the holder decides
  whether it may pause (kind, server, bounds), the profile whether pausing is on;
- an aborted request's slot can be kept a little longer (`hold`): the server goes
  on evaluating the prompt it cannot interrupt, and the next suggestion should wait
  in our priority queue, not in the server's;
- a waiting suggestion that names other hosts (`alternates`) may be moved to one
  of them when its slot frees first (the pool decides; the ticket gets `Moved`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.cache.typeahead import window_extends
from agent.errors import UpstreamBusy

log = logging.getLogger(__name__)

AUTOCOMPLETE, CHAT, BULK, PREFETCH = 0, 1, 2, 3
PRIORITY_NAMES = {AUTOCOMPLETE: "autocomplete", CHAT: "chat", BULK: "bulk", PREFETCH: "prefetch"}
AGE_STEP_S = 5.0  # seconds of waiting that lift a request one priority class
MAX_QUEUE = 512  # waiting requests per upstream before new ones get 503 (Ollama's OLLAMA_MAX_QUEUE)
RETRY_AFTER_S = 2.0
RATE_WEIGHT = 0.2  # weight of the newest measurement in the prompt-rate moving average
RESUME_CLASS_OFFSET = 0.5  # a paused generation's class while it waits: with the suggestions, after them


class Superseded(Exception):
    """A newer completion from the same client extends this one: it will not run as queued.

    `by` is the owner of the newer request's ticket (whatever it passed to `slot`)."""

    def __init__(self, by: Any = None) -> None:
        super().__init__("a newer completion from the same client extends this prompt")
        self.by = by


class Moved(Exception):
    """Another host became free first: the waiting request goes there instead."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(url)


class Pausable(Protocol):
    """A running generation that can give its slot back for a while."""

    def can_pause(self, now: float) -> bool:
        """Whether pausing now is allowed and worth it (bounds, remaining work)."""
        ...

    def remaining_s(self, now: float) -> float:
        """Estimated seconds of generation left (the longest is paused first)."""
        ...

    def request_pause(self) -> None:
        """Close the upstream request and give the slot back (asynchronously)."""
        ...


@dataclass(eq=False)
class Ticket:
    priority: int
    seq: int
    enqueued: float
    client: str = ""  # who asked (for superseding): host + user agent + completion family
    prefix: str = ""  # the prompt prefix typed so far (for superseding)
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    running_task: asyncio.Task[Any] | None = None
    waited: bool = False  # no slot was free when it arrived
    owner: Any = None  # who holds the ticket (told to a request it supersedes)
    pausable: Pausable | None = None  # set by a holder that can pause and resume its generation
    hold_s: float = 0.0  # keep the slot this long after the block ends (the server is still busy)
    resuming: bool = False  # a paused generation waiting to go on
    alternates: tuple[str, ...] = ()  # other hosts that could serve it (a suggestion may move there)

    def effective(self, now: float) -> float:
        aged = (now - self.enqueued) / AGE_STEP_S
        # A paused generation goes on right after the suggestions waiting now (it counts
        # as their class, after them), and ageing bounds its pause to about AGE_STEP_S / 2
        # even under a stream of suggestions: its client is waiting mid-answer.
        base = AUTOCOMPLETE + RESUME_CLASS_OFFSET if self.resuming else self.priority
        return base - aged


@dataclass
class SchedulerStats:
    granted: int = 0
    superseded: int = 0
    dropped_before_upstream: int = 0  # the client left while waiting
    preempted_prefetch: int = 0
    rejected_busy: int = 0
    paused: int = 0  # generations paused for a waiting suggestion
    resumed: int = 0  # paused generations that got their slot back
    paused_s: float = 0.0  # seconds generations spent paused, in total
    held_after_abort: int = 0  # aborted requests whose slot was kept while the server finished
    moved_away: int = 0  # waiting suggestions that another host served
    waited_s: dict[str, float] = field(default_factory=dict)


class Scheduler:
    def __init__(self, slots: int = 1, name: str = "", max_queue: int = MAX_QUEUE) -> None:
        self.slots = slots
        self.name = name
        self.max_queue = max_queue
        self.running: set[Ticket] = set()
        self.waiting: list[Ticket] = []
        self._seq = itertools.count()
        self.stats = SchedulerStats()
        self.on_preempt: Callable[[Ticket], None] | None = None
        self.on_free: Callable[[Scheduler], None] | None = None  # a slot stays free: nothing waits here
        self.preempt_enabled: Callable[[], bool] = lambda: False  # the runtime asks the profile
        self._pausing: set[Ticket] = set()  # asked to pause, not yet given back
        self.prompt_tps = 0.0  # measured prompt evaluation rate (tokens/s), for holding aborted slots

    @property
    def foreground_waiting(self) -> bool:
        return any(t.priority < PREFETCH for t in self.waiting)

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def _pick(self) -> Ticket | None:
        if not self.waiting:
            return None
        now = time.monotonic()

        # The lowest class first (after ageing); within a class autocomplete first and the
        # newest autocomplete first (the one the user is looking at); others in arrival order.
        def key(t: Ticket) -> tuple[float, int, int]:
            auto = t.priority == AUTOCOMPLETE
            return (t.effective(now) // 1, 0 if auto else 1, -t.seq if auto else t.seq)

        return min(self.waiting, key=key)

    def _dispatch(self) -> None:
        while len(self.running) < self.slots:
            t = self._pick()
            if t is None:
                if self.on_free is not None:
                    self.on_free(self)
                return
            self.waiting.remove(t)
            if t.future.done():  # cancelled meanwhile
                continue
            self.running.add(t)
            t.future.set_result(None)

    def movable(self, to_url: str) -> Ticket | None:
        """The waiting suggestion that `to_url` could serve, the one the user looks at first."""
        fits = [
            t
            for t in self.waiting
            if t.priority == AUTOCOMPLETE and to_url in t.alternates and not t.future.done() and not t.resuming
        ]
        return max(fits, key=lambda t: t.seq) if fits else None

    def withdraw(self, ticket: Ticket, to_url: str) -> None:
        """Take a waiting ticket out of this queue: its request goes to `to_url`."""
        if ticket in self.waiting and not ticket.future.done():
            self.waiting.remove(ticket)
            self.stats.moved_away += 1
            ticket.future.set_exception(Moved(to_url))

    def _supersede(self, newer: Ticket) -> None:
        if newer.priority != AUTOCOMPLETE or not newer.client:
            return
        for old in list(self.waiting):
            if (
                old.priority == AUTOCOMPLETE
                and old.client == newer.client
                and old is not newer
                and window_extends(newer.prefix, old.prefix)
                and not old.future.done()
            ):
                self.waiting.remove(old)
                self.stats.superseded += 1
                old.future.set_exception(Superseded(newer.owner))

    def _preempt_prefetch(self) -> None:
        for t in list(self.running):
            if t.priority == PREFETCH and t.running_task is not None and not t.running_task.done():
                self.stats.preempted_prefetch += 1
                t.running_task.cancel()

    def _preempt_for(self, ticket: Ticket) -> None:
        """A suggestion waits and no slot is free: pause the running generation with the
        most work left, if one of a lower class may pause (one pause per waiting suggestion)."""
        if ticket.priority != AUTOCOMPLETE or ticket.future.done() or not self.preempt_enabled():
            return
        waiting_suggestions = sum(1 for t in self.waiting if t.priority == AUTOCOMPLETE and not t.future.done())
        if len(self._pausing) >= waiting_suggestions:
            return
        now = time.monotonic()
        candidates = [
            t for t in self.running if t.priority in (CHAT, BULK) and t.pausable is not None and t not in self._pausing
        ]
        candidates = [t for t in candidates if t.pausable is not None and t.pausable.can_pause(now)]
        if not candidates:
            return
        victim = max(candidates, key=lambda t: t.pausable.remaining_s(now) if t.pausable else 0.0)
        self._pausing.add(victim)
        self.stats.paused += 1
        assert victim.pausable is not None
        victim.pausable.request_pause()

    async def requeue(self, ticket: Ticket) -> float:
        """Give a running ticket's slot back and wait for it again (a paused generation);
        it keeps its class and its arrival time, so it runs right after the suggestions
        that overtook it. Returns the seconds it waited."""
        t0 = time.monotonic()
        self._pausing.discard(ticket)
        self.running.discard(ticket)
        ticket.future = asyncio.get_running_loop().create_future()
        ticket.enqueued = t0
        ticket.resuming = True
        self.waiting.append(ticket)
        self._dispatch()
        try:
            await ticket.future
        except asyncio.CancelledError:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
            raise
        finally:
            waited = time.monotonic() - t0
            self.stats.paused_s += waited
        self.stats.resumed += 1
        return waited

    def _release(self, ticket: Ticket) -> None:
        self._pausing.discard(ticket)
        ticket.pausable = None
        if ticket.hold_s > 0 and ticket in self.running:
            # The server is still busy with this aborted request: keep its slot until then.
            self.stats.held_after_abort += 1
            asyncio.get_running_loop().call_later(ticket.hold_s, self._end_hold, ticket)
            return
        self.running.discard(ticket)
        self._dispatch()

    def _end_hold(self, ticket: Ticket) -> None:
        self.running.discard(ticket)
        self._dispatch()

    @asynccontextmanager
    async def slot(
        self,
        priority: int,
        client: str = "",
        prefix: str = "",
        alternates: tuple[str, ...] = (),
        owner: Any = None,
    ) -> AsyncIterator[Ticket]:
        """Hold one of the upstream's slots for the duration of the block."""
        if len(self.waiting) >= self.max_queue and priority != AUTOCOMPLETE:
            self.stats.rejected_busy += 1
            raise UpstreamBusy(
                f"powergate's queue for {self.name} is full ({self.max_queue} waiting); try again shortly",
                url=self.name,
                retry_after=RETRY_AFTER_S,
            )
        ticket = Ticket(priority, next(self._seq), time.monotonic(), client, prefix, alternates=alternates, owner=owner)
        ticket.running_task = asyncio.current_task()
        ticket.waited = len(self.running) >= self.slots or bool(self.waiting)
        self._supersede(ticket)
        self.waiting.append(ticket)
        if priority < PREFETCH:
            self._preempt_prefetch()
        self._dispatch()
        self._preempt_for(ticket)
        try:
            await ticket.future
        except asyncio.CancelledError:
            # The client went away while waiting: the request never reaches Ollama.
            if ticket in self.waiting:
                self.waiting.remove(ticket)
                self.stats.dropped_before_upstream += 1
            elif ticket in self.running:
                self.running.discard(ticket)
                self._dispatch()
            raise
        name = PRIORITY_NAMES[priority]
        self.stats.waited_s[name] = self.stats.waited_s.get(name, 0.0) + time.monotonic() - ticket.enqueued
        self.stats.granted += 1
        try:
            yield ticket
        finally:
            self._release(ticket)

    def record_prompt_rate(self, tokens: int, seconds: float) -> None:
        """A finished call's prompt evaluation (moving average of tokens per second)."""
        if tokens > 0 and seconds > 0:
            rate = tokens / seconds
            self.prompt_tps = rate if not self.prompt_tps else (1 - RATE_WEIGHT) * self.prompt_tps + RATE_WEIGHT * rate

    def describe(self) -> dict[str, Any]:
        return {
            "slots": self.slots,
            "max_queue": self.max_queue,
            "running": sorted(PRIORITY_NAMES[t.priority] for t in self.running),
            "waiting": sorted(PRIORITY_NAMES[t.priority] for t in self.waiting),
            "granted": self.stats.granted,
            "superseded": self.stats.superseded,
            "dropped_before_upstream": self.stats.dropped_before_upstream,
            "preempted_prefetch": self.stats.preempted_prefetch,
            "rejected_busy": self.stats.rejected_busy,
            "paused": self.stats.paused,
            "resumed": self.stats.resumed,
            "paused_s": round(self.stats.paused_s, 3),
            "held_after_abort": self.stats.held_after_abort,
            "moved_away": self.stats.moved_away,
        }


def priority_for(job: str, kind: str) -> int:
    if job == "autocomplete":
        return AUTOCOMPLETE
    if kind in ("embed", "embeddings"):
        return BULK
    return CHAT
