"""The event-loop thread: uvicorn serving the gateway, and the runtime it owns."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from agent.config import Settings
from agent.errors import PowergateError
from agent.gateway.app import build_app
from agent.gateway.connections import LISTEN_BACKLOG, ConnectionLimits, Counters, guarded_protocol
from agent.power.file_source import make_source
from agent.power.monitor import PowerMonitor
from agent.runtime import Runtime

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0  # seconds to wait for the port to be listening
SHUTDOWN_GRACE = 3  # seconds in-flight requests get to finish on quit


class PortInUse(PowergateError):
    pass


class QuietServer(uvicorn.Server):
    """uvicorn's main loop wakes every 0.1 s to look for a stop request and to refresh
    the Date header. We send no Date header and stop through an event, so the loop
    sleeps until there is work: an idle agent costs the battery nothing."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_event: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self.stop_event = asyncio.Event()
        await self.on_tick(0)  # sets the default headers once
        if not self.should_exit:
            await self.stop_event.wait()

    def request_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.should_exit = True
        if self.stop_event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.stop_event.set)


def connection_limits() -> ConnectionLimits:
    """The limits of this process (a function, so that tests can use short timeouts)."""
    return ConnectionLimits.for_this_process()


def new_event_loop() -> asyncio.AbstractEventLoop:
    # Windows: the Proactor loop (sockets and subprocesses); never uvloop, which is POSIX-only.
    if sys.platform == "win32":
        return asyncio.ProactorEventLoop()  # type: ignore[attr-defined,unused-ignore]
    return asyncio.new_event_loop()


class AgentServer:
    """Runs the gateway on its own thread and loop; `call` hands work to that loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: QuietServer | None = None
        self._thread = threading.Thread(target=self._run, name="powergate-loop", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.stopped = threading.Event()
        self.limits = connection_limits()
        self.connection_counters = Counters()

    def _check_port(self) -> None:
        s = self.settings.server
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if sys.platform != "win32":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((s.host, s.port))
            except OSError as exc:
                raise PortInUse(
                    f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}. Is powergate already "
                    "running (`powergate status`)? Or choose another port with --port."
                ) from None

    def _run(self) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            loop.close()
            self.stopped.set()

    async def _serve(self) -> None:
        self.runtime = Runtime(self.settings)
        await self.runtime.start()
        loop = asyncio.get_running_loop()
        runtime = self.runtime
        monitor = PowerMonitor(
            make_source(self.settings.power.source),
            runtime.controller.profile.interval_s,
            lambda snap: None if loop.call_soon_threadsafe(runtime.on_snapshot, snap) else None,
        )
        runtime.monitor = monitor
        monitor.start()
        app = build_app(self.runtime)
        config = uvicorn.Config(
            app,
            host=self.settings.server.host,
            port=self.settings.server.port,
            loop="none",
            # httptools (a dependency) with read timeouts and a connection cap
            http=guarded_protocol(self.limits, self.connection_counters),
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,  # nothing sits in front of us; never trust X-Forwarded-For
            date_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            timeout_keep_alive=int(self.limits.keep_alive_s),
            backlog=LISTEN_BACKLOG,
        )
        self._server = QuietServer(config)
        # uvicorn installs signal handlers only on the main thread; ours is not, and the
        # main thread turns Ctrl+C / SIGTERM into stop().
        serve = asyncio.ensure_future(self._server.serve())
        while not self._server.started and not serve.done():  # noqa: ASYNC110 - uvicorn offers no event; start-up only
            await asyncio.sleep(0.01)
        self._ready.set()
        try:
            await serve
        finally:
            monitor.stop()
            await self.runtime.aclose()

    def start(self) -> None:
        self._check_port()
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise PowergateError("the gateway did not start in time")
        if self._error is not None:
            raise PowergateError(f"the gateway failed to start: {self._error}") from self._error
        if self._server is None or not self._server.started:
            raise PortInUse(f"cannot listen on {self.settings.server.host}:{self.settings.server.port}")

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the loop thread (the one way other threads change state)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def request_stop(self) -> None:
        """Ask the server to stop, without waiting (safe in a signal handler)."""
        if self._server is not None and self.loop is not None:
            self._server.request_stop(self.loop)

    def stop(self, timeout: float = SHUTDOWN_GRACE + 2) -> None:
        if self._server is not None and self.loop is not None:
            self._server.request_stop(self.loop)
        self._thread.join(timeout)
