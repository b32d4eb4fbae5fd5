"""Item 15: the README and the scheduler agree on who is refused when the queue is full:
chat, embeddings, other bulk work and prefetch get 503 with Retry-After; a suggestion
(autocomplete) is never refused."""

from __future__ import annotations

import asyncio
import re

import pytest

from agent.errors import UpstreamBusy
from agent.upstreams import scheduling
from agent.upstreams.scheduling import AUTOCOMPLETE, BULK, CHAT, PREFETCH, Scheduler
from tests.conftest import ROOT


def queue_bound(s: Scheduler) -> int:
    return int(getattr(s, "max_queue", scheduling.MAX_QUEUE))


async def test_full_queue_refuses_all_but_suggestions() -> None:
    s = Scheduler(slots=1, name="http://sim")
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(priority: int) -> None:
        async with s.slot(priority):
            started.set()
            await release.wait()

    tasks = [asyncio.ensure_future(hold(CHAT))]
    await started.wait()
    tasks += [asyncio.ensure_future(hold(CHAT)) for _ in range(queue_bound(s))]
    await asyncio.sleep(0)
    assert len(s.waiting) == queue_bound(s)
    for priority in (CHAT, BULK, PREFETCH):
        with pytest.raises(UpstreamBusy) as busy:
            async with s.slot(priority):
                pass
        assert busy.value.status_code == 503 and busy.value.retry_after > 0
    suggestion = asyncio.ensure_future(hold(AUTOCOMPLETE))
    await asyncio.sleep(0)
    assert not suggestion.done() and len(s.waiting) == queue_bound(s) + 1  # queued, not refused
    release.set()
    await asyncio.gather(*tasks, suggestion)


def test_readme_says_what_the_scheduler_does() -> None:
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    assert re.search(r"a suggestion \(autocomplete\) is never refused", text), "README: queue refusal"
    assert re.search(r"chat, embedding, other bulk and prefetch requests get `503`", text)
