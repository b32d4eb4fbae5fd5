"""The outermost layer: an unexpected error never costs the client its connection.

Starlette answers an unhandled exception with our 500 (in the API's format, logged
once by the app's handler) and then re-raises it; uvicorn, seeing an exception after
a complete answer, closes the kept-alive connection, so the client's next request
fails too. Here an exception after a complete answer is dropped (it was answered and
logged), one before any answer gets the 500 itself, and one in the middle of a body
is re-raised: the server must then abort the connection so the client sees a broken
answer instead of a short one.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.errors import StreamBroken
from agent.gateway.responses import error_body

log = logging.getLogger(__name__)

# scope["extensions"] key of a callable our HTTP protocol provides: ends the current
# response by closing the connection without the chunked terminator
ABORT_EXTENSION = "powergate.abort"


class ErrorGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        complete = False

        async def tracked(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if complete:
                return  # answered (500 by the app's handler, which logged it)
            if started:
                # mid-body: the connection must end without a clean end of body
                abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
                if isinstance(exc, StreamBroken):
                    log.warning("%s: %s; the client's connection was aborted", scope.get("path", ""), exc)
                else:
                    log.exception("internal error in the middle of %s", scope.get("path", ""))
                if abort is None:
                    raise  # another server: it closes the connection on an exception
                abort()
                return
            log.exception("internal error on %s", scope.get("path", ""))
            path = str(scope.get("path", ""))
            body = error_body(path, f"internal error in powergate: {type(exc).__name__}", 500)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})
