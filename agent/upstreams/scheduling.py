"""Interactive-first scheduling of upstream work.

Ollama runs one generation at a time per runner; while a chat answer or an
indexing batch runs, the editor's next suggestion waits behind it. Every call
powergate makes to an Ollama goes through that upstream's scheduler:

- `max_concurrency` slots (default 1, like Ollama);
- priorities: autocomplete/FIM > chat > embeddings and other bulk > prefetch;
  within autocomplete the newest first, and an older queued completion from the
  same client that the newer one extends is superseded: it does not run on its own,
  its owner is told which newer request extends it (and answers from that one, or
  runs after all when that one fails or is aborted);
- ageing: every `AGE_STEP_S` a request waits lifts it one class, so nothing starves;
- a bounded queue as deep as Ollama's (`OLLAMA_MAX_QUEUE`, 512): past `max_queue` waiting
  (per `[[upstream]]`), a clear UpstreamBusy (503 + Retry-After). The official clients do not
  retry a 503, so the bound must not be smaller than what Ollama itself would have queued;
- a waiter whose client left is simply cancelled: it never reaches Ollama;
- a running prefetch is cancelled as soon as foreground work waits for its slot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.errors import UpstreamBusy

log = logging.getLogger(__name__)

AUTOCOMPLETE, CHAT, BULK, PREFETCH = 0, 1, 2, 3
PRIORITY_NAMES = {AUTOCOMPLETE: "autocomplete", CHAT: "chat", BULK: "bulk", PREFETCH: "prefetch"}
AGE_STEP_S = 5.0  # seconds of waiting that lift a request one priority class
MAX_QUEUE = 512  # waiting requests per upstream before new ones get 503 (Ollama's OLLAMA_MAX_QUEUE)
RETRY_AFTER_S = 2.0


class Superseded(Exception):
    """A newer completion from the same client extends this one: it will not run as queued.

    `by` is the owner of the newer request's ticket (whatever it passed to `slot`)."""

    def __init__(self, by: Any = None) -> None:
        super().__init__("a newer completion from the same client extends this prompt")
        self.by = by


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

    def effective(self, now: float) -> float:
        aged = (now - self.enqueued) / AGE_STEP_S
        return self.priority - aged


@dataclass
class SchedulerStats:
    granted: int = 0
    superseded: int = 0
    dropped_before_upstream: int = 0  # the client left while waiting
    preempted_prefetch: int = 0
    rejected_busy: int = 0
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
                return
            self.waiting.remove(t)
            if t.future.done():  # cancelled meanwhile
                continue
            self.running.add(t)
            t.future.set_result(None)

    def _supersede(self, newer: Ticket) -> None:
        if newer.priority != AUTOCOMPLETE or not newer.client:
            return
        for old in list(self.waiting):
            if (
                old.priority == AUTOCOMPLETE
                and old.client == newer.client
                and old is not newer
                and newer.prefix.startswith(old.prefix)
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

    @asynccontextmanager
    async def slot(self, priority: int, client: str = "", prefix: str = "", owner: Any = None) -> AsyncIterator[Ticket]:
        """Hold one of the upstream's slots for the duration of the block."""
        if len(self.waiting) >= self.max_queue and priority != AUTOCOMPLETE:
            self.stats.rejected_busy += 1
            raise UpstreamBusy(
                f"powergate's queue for {self.name} is full ({self.max_queue} waiting); try again shortly",
                url=self.name,
                retry_after=RETRY_AFTER_S,
            )
        ticket = Ticket(priority, next(self._seq), time.monotonic(), client, prefix, owner=owner)
        ticket.running_task = asyncio.current_task()
        ticket.waited = len(self.running) >= self.slots or bool(self.waiting)
        self._supersede(ticket)
        self.waiting.append(ticket)
        if priority < PREFETCH:
            self._preempt_prefetch()
        self._dispatch()
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
            self.running.discard(ticket)
            self._dispatch()

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
        }


def priority_for(job: str, kind: str) -> int:
    if job == "autocomplete":
        return AUTOCOMPLETE
    if kind in ("embed", "embeddings"):
        return BULK
    return CHAT
