"""Connection limits at the HTTP edge: header and body read timeouts, an idle timeout,
and a cap on open connections below the file-descriptor limit.

uvicorn times out idle keep-alive connections only after a first answer, and never a
client that sends its headers or body a byte at a time (slowloris): about a thousand
such sockets used every descriptor and made the gateway unreachable. This protocol
(uvicorn's httptools protocol plus timers) gives each connection
- HEADER_TIMEOUT_S from connecting, or from the first byte of a request, to its last
  header line, then a 408 and the connection closed;
- BODY_IDLE_TIMEOUT_S between pieces of a request body (while we are reading it: a
  body we paused for back-pressure is not the client's fault);
- the cap: a new connection beyond MAX_CONNECTIONS closes the connection that has
  been waiting longest for a request (a slowloris or an idle keep-alive); when every
  connection is busy with a request, the new one gets a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agent.gateway.guard import ABORT_EXTENSION

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0  # seconds from connect (or a request's first byte) to the end of its headers
BODY_IDLE_TIMEOUT_S = 30.0  # seconds without a byte of a request body we are waiting for
KEEP_ALIVE_IDLE_S = 30.0  # seconds an idle kept-alive connection stays open (uvicorn's timer)
DEFAULT_MAX_CONNECTIONS = 1024  # editors keep a handful each
FD_RESERVE_FRACTION = 0.25  # descriptors left for upstream connections, cache files, logs, Redis
MIN_CONNECTIONS = 16
# asyncio accepts up to `backlog` sockets in one go before any protocol sees them, and a
# refused one gives its descriptor back only on a later loop iteration, by which time the
# next burst may already be accepted: the cap must leave two bursts of descriptors free
# (one left a busy machine's agent running out now and then). uvicorn's default backlog
# of 2048 would make any cap useless.
LISTEN_BACKLOG = 64
ACCEPT_BURSTS = 2  # bursts of LISTEN_BACKLOG accepted sockets that can be in flight at once
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_idle_timeout_s: float = BODY_IDLE_TIMEOUT_S
    keep_alive_s: float = KEEP_ALIVE_IDLE_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def for_this_process(cls) -> ConnectionLimits:
        return cls(max_connections=max_connections(fd_soft_limit()))


def fd_soft_limit() -> int | None:
    """The process's descriptor limit; None where there is none to speak of (Windows
    sockets are not bounded by a per-process descriptor table)."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def max_connections(fd_limit: int | None) -> int:
    if fd_limit is None:
        return DEFAULT_MAX_CONNECTIONS
    usable = int(fd_limit * (1 - FD_RESERVE_FRACTION)) - ACCEPT_BURSTS * LISTEN_BACKLOG
    return max(MIN_CONNECTIONS, min(DEFAULT_MAX_CONNECTIONS, usable))


def _raw_answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


class Counters:
    def __init__(self) -> None:
        self.header_timeouts = 0
        self.body_timeouts = 0
        self.evicted = 0
        self.refused = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def guarded_protocol(limits: ConnectionLimits, counters: Counters) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with our timers and cap (a class: uvicorn wants one)."""

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.timeout_keep_alive = int(max(1, limits.keep_alive_s))
            self._waiting_since: float | None = None  # waiting for a request's headers
            self._read_timer: asyncio.TimerHandle | None = None
            self._in_body = False

        # ------------------------------------------------------------ timers
        def _arm(self, seconds: float, handler: Any) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(seconds, handler)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _close_with(self, status: int, reason: str, message: str) -> None:
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if cycle.response_started:
                    self.transport.abort()
                    return
                cycle.disconnected = True  # the handler's answer is dropped; its receive() sees a disconnect
                cycle.message_event.set()
            self.transport.write(_raw_answer(status, reason, message))
            self.transport.close()

        def _header_timeout(self) -> None:
            counters.header_timeouts += 1
            self._close_with(
                408, "Request Timeout", f"request headers not received within {limits.header_timeout_s:g} s"
            )

        def _body_timeout(self) -> None:
            if self.flow.read_paused:  # we stopped reading, not the client: wait on
                self._arm(limits.body_idle_timeout_s, self._body_timeout)
                return
            counters.body_timeouts += 1
            self._close_with(408, "Request Timeout", f"no request body received for {limits.body_idle_timeout_s:g} s")

        def _abort_response(self) -> None:
            """End the current response as broken: what was written is flushed, then the
            connection closes without a chunked terminator (clients raise)."""
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # later sends of this response are dropped
                cycle.keep_alive = False
                cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.close()

        # ------------------------------------------------------------ connection life
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._waiting_since = time.monotonic()
            if len(self.connections) > limits.max_connections and not self._make_room():
                counters.refused += 1
                log.warning("connection refused: %d connections open, all busy", len(self.connections) - 1)
                transport.write(
                    _raw_answer(
                        503,
                        "Service Unavailable",
                        f"too many connections ({limits.max_connections}); retry shortly",
                        f"retry-after: {RETRY_AFTER_S}\r\n",
                    )
                )
                transport.close()
                return
            self._arm(limits.header_timeout_s, self._header_timeout)

        def _make_room(self) -> bool:
            """Close the connection that has waited longest for a request; False if none waits."""
            waiting = [
                c
                for c in self.connections
                if c is not self and isinstance(c, GuardedProtocol) and c._waiting_since is not None
            ]
            if not waiting:
                return False
            victim = min(waiting, key=lambda c: c._waiting_since or 0.0)
            counters.evicted += 1
            victim._disarm()
            victim.transport.close()
            victim.connections.discard(victim)
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        # ------------------------------------------------------------ parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            extensions: dict[str, Any] = {ABORT_EXTENSION: self._abort_response}
            self.scope["extensions"] = extensions  # type: ignore[typeddict-item]
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            if self._read_timer is None:
                self._arm(limits.header_timeout_s, self._header_timeout)

        def on_headers_complete(self) -> None:
            self._waiting_since = None
            self._disarm()
            super().on_headers_complete()
            self._in_body = True
            self._arm(limits.body_idle_timeout_s, self._body_timeout)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            if self._in_body:
                self._arm(limits.body_idle_timeout_s, self._body_timeout)

        def on_message_complete(self) -> None:
            self._in_body = False
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._waiting_since = time.monotonic()  # idle: uvicorn's keep-alive timer runs

    return GuardedProtocol
