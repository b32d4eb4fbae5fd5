"""Upstream calls shared by every client that asked the same thing at the same time.

A Flight owns one streamed upstream request. Clients subscribe: a stream client
reads the chunks from the first one on as they arrive, a whole-answer client
waits for the end. The upstream request is cancelled when the last subscriber
leaves, so an editor's abort still stops the model server when nobody else waits.
The flight speaks the client's dialect; its backend translates to the server's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from agent.cache.answers import DONE_LINE, chunk_is_final, completion_text, is_sse, stream_events, synth_completion
from agent.cache.typeahead import same_position, window_typed
from agent.errors import StreamBroken, UpstreamError
from agent.journey.preempt import PauseState
from agent.upstreams.base import Reply, Upstream
from agent.upstreams.pool import Route, retryable
from agent.upstreams.scheduling import AUTOCOMPLETE, CHAT, Moved, Superseded

MAX_GUESSES_PER_FAMILY = 4  # running prefetches remembered per typeahead family
MAX_GUESS_FAMILIES = 256
MAX_ABORT_HOLD_S = 3.0  # seconds an aborted request's slot is kept at most (prompt evaluation left)
CHARS_PER_TOKEN = 4  # rough prompt size in tokens, for the abort hold

log = logging.getLogger(__name__)


def ends_with_error(chunks: list[bytes]) -> bool:
    """The upstream wrote its own error line last (Ollama does on a mid-stream failure)."""
    return bool(chunks) and b'"error"' in chunks[-1][:32]


class Flight:
    def __init__(self, key: str, api: str, model: str, whole: bool = False) -> None:
        self.key = key
        self.api = api
        self.model = model
        self.whole = whole  # upstream asked for the whole answer (stream=false): chunks = [answer]
        self.chunks: list[bytes] = []
        self.status: int | None = None  # upstream status, once its headers are in
        self.error_body: bytes = b""
        self.error_exc: UpstreamError | None = None
        self.done = False
        self.complete = False  # finished normally: done:true / [DONE]
        self.subscribers = 0
        self.followers = 0
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.on_complete: Callable[[Flight], None] | None = None
        self.on_finished: Callable[[Flight], None] | None = None  # metrics: runs for every normal finish
        self.started_at = time.perf_counter()
        self.wall_s = 0.0
        self.queued = False  # another call held Ollama when this one arrived
        self.superseded = False  # a newer request of the same client extended this one
        self.synthesized = False  # answered from that newer request, without the model server
        self.prefetch = False  # started by the prefetcher, nobody asked yet
        self.promoted = False  # a client joined the prefetch
        self.ticket: Any = None
        self.on_done: Callable[[Flight], None] | None = None
        self.priority = CHAT
        self.client = ""
        self.prefix = ""
        self.pause: PauseState | None = None  # set when this generation may be paused for a suggestion
        self.sent_at: float | None = None  # when the upstream request went out (time.monotonic)
        self.prompt_chars = 0
        self.upstream_url = ""  # the host that answers (X-Powergate-Upstream)
        self.first_chunk_at = 0.0  # perf_counter of the first streamed chunk (measured first-token time)

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def run(self, route: Route, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            try:
                await self._attempts(route, path, body, headers)
            except Superseded as exc:
                # A newer request of the same client extends this prompt. Never refuse a
                # waiting request: answer it from the newer one (what was typed in between
                # + the newer completion), or, when that fails or is aborted, run it after all.
                self.superseded = True
                if not await self._answer_from(exc.by):
                    self.client = ""  # running after all: not superseded a second time
                    await self._attempts(route, path, body, headers)
        except UpstreamError as exc:  # the scheduler's queue is full
            self.error_exc = exc
        finally:
            self._finish()

    async def _answer_from(self, newer: Any) -> bool:
        """Take the answer of `newer` (a Flight whose prompt extends ours); False if it has none."""
        if not isinstance(newer, Flight) or newer.api != self.api:
            return False
        typed = window_typed(newer.prefix, self.prefix)  # the newer window may have dropped lines
        if typed is None:
            return False
        await newer.finished()
        if not newer.complete or not newer.chunks:
            return False
        text = typed + completion_text(newer.api, newer.chunks)
        self.chunks = synth_completion(self.api, self.model, text, newer.chunks)
        self.whole = False
        self.synthesized = True
        self.status = 200
        self.complete = True
        return True

    async def _attempts(self, route: Route, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        """The route's first host; once the next one if the first failed before the answer began;
        a waiting suggestion follows its ticket when another host of its route frees first."""
        up: Upstream | None = route.first
        while up is not None:
            # only suggestions move between queues: the user is waiting for them
            alternates = route.alternates(up) if self.priority == AUTOCOMPLETE else ()
            try:
                async with up.scheduler.slot(self.priority, self.client, self.prefix, alternates, owner=self) as ticket:
                    self.ticket = ticket
                    self.queued = ticket.waited
                    self.started_at = time.perf_counter()
                    self.upstream_url = up.url
                    route.attempt(up)
                    if self.pause is not None and not self.whole:
                        ticket.pausable = self.pause
                    try:
                        await self._run(up, path, body, headers)
                        self._record_prompt_rate(up)
                    except asyncio.CancelledError:
                        ticket.hold_s = self._abort_hold(up)
                        raise
                    if not retryable(self.error_exc, self.status):
                        if self.error_exc is None:
                            route.answered(up)
                        return
                    route.failed(up, self.error_exc, self.status)
                    nxt = route.next_after(up)
                    if nxt is None:
                        return
                    # Nothing reached a client yet (no status was published): start over elsewhere.
                    log.info(
                        "%s failed before answering (%s); trying %s", up.url, self.error_exc or self.status, nxt.url
                    )
                    self.status, self.error_body, self.error_exc, self.sent_at = None, b"", None, None
                    self.chunks.clear()
                    up = nxt
            except Moved as moved:
                up = route.host(moved.url)

    async def _run(self, upstream: Upstream, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        sse = is_sse(self.api)
        resp: Reply | None = None
        try:
            if self.whole:
                await self._run_whole(upstream, path, body, headers)
                return
            while True:
                self.sent_at = time.monotonic()
                resp = await upstream.infer(path, body, headers, stream=True)
                if resp.status_code != 200:
                    err = await resp.aread()
                    if self.pause is not None and self.pause.resumes:
                        self._fail_midway(f"resuming the paused answer failed: {err[:200]!r}")
                    else:
                        self.error_body = err
                    # published after the body is read: a 503 may still be retried on another host
                    if self.status is None:
                        self.status = resp.status_code
                    return
                if self.status is None:
                    self.status = resp.status_code
                self._notify()
                if self.pause is None:
                    await self._read(resp, sse)
                    return
                first = len(self.chunks)
                if not await self._read_or_pause(resp, sse, self.pause):
                    return
                await resp.aclose()
                resp = None
                nxt = self.pause.paused(self.chunks[first:], time.monotonic())
                if nxt is None:
                    return
                body = nxt
                waited = await upstream.scheduler.requeue(self.ticket)
                self.pause.resumed(time.monotonic(), waited)
        except UpstreamError as exc:
            if self.pause is not None and self.pause.resumes:
                self._fail_midway(f"resuming the paused answer failed: {exc}")
            else:
                self.error_exc = exc
        except httpx.HTTPError as exc:
            if resp is None and self.pause is not None and self.pause.resumes:
                self._fail_midway(f"resuming the paused answer failed: {upstream.translate(exc)}")
            elif resp is None:
                self.error_exc = upstream.translate(exc)
            # else: the stream broke midway; complete stays False and nothing is stored
            log.debug("upstream stream ended early: %s", exc)
        finally:
            if resp is not None:
                await resp.aclose()

    async def _read(self, resp: Reply, sse: bool) -> None:
        buf = b""
        async for raw in resp.aiter_raw():
            buf += raw
            added = False
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl].strip(), buf[nl + 1 :]
                if self._take(line, sse):
                    added = True
            if added:
                if not self.first_chunk_at:
                    self.first_chunk_at = time.perf_counter()
                self._notify()
        if buf.strip() and self._take(buf.strip(), sse):
            self._notify()

    async def _read_or_pause(self, resp: Reply, sse: bool, pause: PauseState) -> bool:
        """Read the reply until it ends (False) or the scheduler asks for a pause (True).
        Only complete chunks were taken, so the paused part's text is exactly what the
        subscribers have."""
        reader = asyncio.ensure_future(self._read(resp, sse))
        waiter = asyncio.ensure_future(pause.requested.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not reader.done():
                reader.cancel()
                try:
                    await reader
                except asyncio.CancelledError:
                    pass
        if reader.done() and not reader.cancelled():
            reader.result()  # the reply ended (or broke): raise what it raised
            return False
        return not self.complete

    def _fail_midway(self, message: str) -> None:
        # Stream clients already have part of the answer: end it with an error chunk, the way
        # Ollama reports a failure mid-stream, and store nothing.
        self.chunks.append(json.dumps({"error": message}).encode())
        self.complete = False
        self._notify()

    def _record_prompt_rate(self, upstream: Upstream) -> None:
        if not self.complete or not self.chunks or is_sse(self.api):
            return
        try:
            doc = json.loads(self.chunks[-1])
        except ValueError:
            return
        if isinstance(doc, dict):
            n, ns = doc.get("prompt_eval_count"), doc.get("prompt_eval_duration")
            if not isinstance(n, int) or n <= 0:
                # some servers report no prompt count (llama-cpp-python in some modes): the
                # prompt's size in characters gives the same rough token count the hold uses
                n = self.prompt_chars // CHARS_PER_TOKEN
            if isinstance(ns, int):
                upstream.scheduler.record_prompt_rate(n, ns / 1e9)

    def _abort_hold(self, upstream: Upstream) -> float:
        """Seconds to keep the slot of a request aborted while the server still evaluates its
        prompt (it cannot be interrupted there), from the prompt-evaluation rate measured on
        this upstream; 0 once tokens came (the server stops at the next token)."""
        if self.sent_at is None or self.chunks or (not self.whole and self.status is not None):
            return 0.0
        rate = upstream.scheduler.prompt_tps
        if not rate:
            return 0.0
        left = self.prompt_chars / CHARS_PER_TOKEN / rate - (time.monotonic() - self.sent_at)
        return min(MAX_ABORT_HOLD_S, max(0.0, left))

    def _finish(self) -> None:
        self.done = True
        self.wall_s = time.perf_counter() - self.started_at
        self._notify()
        # An answer made from another request's is neither an upstream call to measure
        # nor an answer of the model to store under this prompt.
        if self.complete and not self.synthesized and self.on_finished is not None:
            try:
                self.on_finished(self)
            except Exception:
                log.exception("recording upstream figures failed")
        if self.complete and not self.synthesized and self.on_complete is not None:
            try:
                self.on_complete(self)
            except Exception:
                log.exception("storing a finished answer failed")
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:
                log.exception("flight callback failed")

    async def _run_whole(self, upstream: Upstream, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.sent_at = time.monotonic()
        resp = await upstream.infer(path, body, headers, stream=False)
        self.status = resp.status_code
        if resp.status_code != 200:
            self.error_body = resp.content
            return
        answer = resp.content.strip()
        self.chunks.append(answer)
        if is_sse(self.api):
            self.complete = b'"error"' not in answer[:20]
        else:
            self.complete = b'"done":true' in answer or b'"done": true' in answer

    def _take(self, line: bytes, sse: bool) -> bool:
        if not line:
            return False
        if sse:
            if not line.startswith(b"data:"):
                return False
            line = line[5:].strip()
            if line == b"[DONE]":
                self.complete = True
                return False
        # Quotes inside JSON strings are escaped, so these byte patterns only match real
        # keys: only the final chunk and error chunks need parsing.
        if b'"error"' in line:
            self.chunks.append(line)
            self.complete = False
        elif not sse and (b'"done":true' in line or b'"done": true' in line):
            try:
                doc = json.loads(line)
            except ValueError:
                self.chunks.append(line)
                return True
            self.complete = isinstance(doc, dict) and chunk_is_final(self.api, doc)
            if self.complete and self.pause is not None and self.pause.resumes:
                line = json.dumps(self.pause.stitch_final(doc), separators=(",", ":")).encode()
            self.chunks.append(line)
        else:
            self.chunks.append(line)
            if self.pause is not None:
                self.pause.token(time.monotonic())
        return True

    async def started(self) -> None:
        """Wait until the upstream answered with headers (or failed)."""
        while self.status is None and not self.done:
            await self._changed.wait()

    async def finished(self) -> None:
        while not self.done:
            await self._changed.wait()

    def join(self) -> None:
        self.subscribers += 1

    def leave(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0 and not self.done and self.task is not None:
            # Nobody waits any more: stop the server generating for nobody.
            self.task.cancel()

    async def stream(self, include_usage: bool) -> AsyncIterator[bytes]:
        """The chunks from the first on, as they arrive (a subscriber must have joined)."""
        sse = is_sse(self.api)
        i = 0
        try:
            while True:
                changed = self._changed
                if i < len(self.chunks):
                    pending = self.chunks[i:]
                    i += len(pending)
                    # One write per chunk, as Ollama writes them: clients that parse each
                    # read as one JSON document break on two lines in one write.
                    for event in stream_events(self.api, pending, include_usage, done_marker=False):
                        yield event
                    continue
                if self.done:
                    break
                await changed.wait()
            if sse and self.complete:
                yield DONE_LINE
            elif not self.complete and not self.superseded and not ends_with_error(self.chunks):
                # cut mid-way (the upstream died): a clean end would pass a truncated answer off as whole
                raise StreamBroken("the model server stopped before the answer was complete")
        finally:
            self.leave()


class Flights:
    """The flights in the air, by cache key (and prefetches also by typeahead family)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Flight] = {}
        self._guesses: dict[str, list[tuple[str, Flight]]] = {}  # family -> (prompt prefix, prefetch)

    def add_guess(self, family: str, prefix: str, flight: Flight) -> None:
        """A prefetch the editor's next request may join even when its window moved."""
        live = [(p, f) for p, f in self._guesses.get(family, []) if not f.done]
        live.append((prefix, flight))
        self._guesses[family] = live[-MAX_GUESSES_PER_FAMILY:]
        while len(self._guesses) > MAX_GUESS_FAMILIES:
            del self._guesses[next(iter(self._guesses))]

    def find_guess(self, family: str, prefix: str) -> Flight | None:
        """A running prefetch for the same editing position whose prompt had more lines at
        the top (the same suffix, model and options: the family)."""
        for p, f in reversed(self._guesses.get(family, [])):
            if not f.done and same_position(prefix, p):
                return f
        return None

    def get(self, key: str) -> Flight | None:
        f = self._by_key.get(key)
        return f if f is not None and not f.done else None

    def start(
        self,
        key: str,
        api: str,
        model: str,
        upstream: Route | Upstream,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        register: bool = True,
        whole: bool = False,
        priority: int = CHAT,
        client: str = "",
        prefix: str = "",
        pause: PauseState | None = None,
    ) -> Flight:
        """Start the upstream call; unregistered flights (no-cache requests) are never joined.
        With `pause`, the generation may be paused for a waiting suggestion and resumed."""
        flight = Flight(key, api, model, whole)
        flight.priority, flight.client, flight.prefix = priority, client, prefix
        flight.pause = pause
        flight.prompt_chars = _prompt_chars(body)
        if register:
            self._by_key[key] = flight
        # a Route: the hosts to try, best first; a bare Upstream: that host alone (no failover)
        route = upstream if isinstance(upstream, Route) else Route([upstream], "given")
        flight.task = asyncio.ensure_future(self._run(flight, route, path, body, headers))
        return flight

    async def _run(
        self, flight: Flight, upstream: Route, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        try:
            await flight.run(upstream, path, body, headers)
        finally:
            if self._by_key.get(flight.key) is flight:
                del self._by_key[flight.key]

    def __len__(self) -> int:
        return len(self._by_key)


def _prompt_chars(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt) + len(str(body.get("suffix") or ""))
    messages = body.get("messages")
    if isinstance(messages, list):
        return sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
    return 0
