"""The HTTP edge of forwarding: client disconnects, relaying streams, pass-through, upstream errors.

A client that goes away (an editor aborting a suggestion on the next keystroke)
closes the upstream request at once, so the server stops generating: streams are
cancelled by Starlette's disconnect listener, whole answers by `until_done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive

from agent.errors import StreamBroken
from agent.gateway.responses import H_MODEL, NDJSON, NO_MODEL, SSE, error_response, is_openai_path, json_media
from agent.upstreams.base import HOP_HEADERS, RESPONSE_DROP, Reply, Upstream

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_done(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (raises ClientGone)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise ClientGone()


def forward_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k not in HOP_HEADERS}


def relay_headers(resp: Reply, extra: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in resp.headers.items() if k.lower() not in RESPONSE_DROP}
    out.update(extra)
    return out


def upstream_error(path: str, status: int, body: bytes, headers: dict[str, str]) -> Response:
    """Relay an upstream error with its status; wrap a non-JSON body in the API's format."""
    headers = dict(headers, **{H_MODEL: NO_MODEL})  # no model produced this answer
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and "error" in parsed:
            if is_openai_path(path) and isinstance(parsed["error"], str):
                return error_response(path, parsed["error"], status, headers=headers)
            return Response(body, status_code=status, media_type=json_media(path), headers=headers)
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip() or "no message"
    return error_response(path, f"Ollama answered {status}: {text}", status, headers=headers)


LineSink = Callable[[bytes], None]


async def relay_chunks(
    resp: Reply,
    on_line: LineSink | None = None,
    on_end: Callable[[bool], Awaitable[None] | None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield upstream bytes as they arrive. `on_line` sees every complete line,
    `on_end(finished)` runs once: finished is False when the stream was cut."""
    finished = False
    buf = b""
    try:
        async for chunk in resp.aiter_raw():
            if on_line is not None:
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        on_line(line)
            yield chunk
        if on_line is not None and buf.strip():
            on_line(buf)
        finished = True
    except httpx.HTTPError as exc:
        # The upstream went away mid-stream: say so, and let the connection be aborted.
        finished = False
        raise StreamBroken(f"the model server stopped before the answer was complete ({type(exc).__name__})") from None
    finally:
        await resp.aclose()
        if on_end is not None:
            r = on_end(finished)
            if r is not None:
                await r


def broken_line(path: str, message: str) -> bytes:
    """The error a model server writes in the middle of a stream, in the client's dialect:
    Ollama's `{"error": ...}` line on NDJSON, an error event on SSE (OpenAI's clients raise
    on a `data:` payload with an "error" member)."""
    if is_openai_path(path):
        doc = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
        return b"data: " + json.dumps(doc).encode() + b"\n\n"
    return json.dumps({"error": message}).encode() + b"\n"


async def end_visibly(path: str, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Relay `body`; if it breaks, add the error line and re-raise, so that the edge aborts
    the connection (no clean chunked end): clients raise instead of keeping a short answer."""
    tail = b"\n\n"
    try:
        async for chunk in body:
            if chunk:
                tail = (tail + chunk)[-2:]
            yield chunk
    except StreamBroken as exc:
        sep = b"\n\n" if is_openai_path(path) else b"\n"
        lead = b"" if tail.endswith(sep) else sep  # never glue the error onto a half-written line
        yield lead + broken_line(path, str(exc))
        raise


def stream_response(path: str, body: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    media = SSE if is_openai_path(path) else NDJSON
    return StreamingResponse(end_visibly(path, body), media_type=media, headers=headers)


async def passthrough(request: Request, upstream: Upstream, extra_headers: dict[str, str]) -> Response:
    """Any other /api/* call, unchanged both ways, streamed both ways."""
    has_body = request.method not in ("GET", "HEAD")
    content: Any = request.stream() if has_body else None
    resp = await upstream.passthrough(
        request.method, request.url.path, content, forward_headers(request), params=request.url.query or None
    )
    headers = relay_headers(resp, extra_headers)
    media = resp.headers.get("content-type")
    headers.pop("content-type", None)
    # A body Ollama sent with a length keeps it (we ask for identity encoding, so the bytes
    # are relayed unchanged): not re-chunked, and a HEAD says how long the GET would be.
    length = resp.headers.get("content-length")
    if length is not None and "content-encoding" not in resp.headers:
        headers["content-length"] = length
    if request.method == "HEAD":
        await resp.aclose()
        return Response(b"", status_code=resp.status_code, headers=headers, media_type=media)
    return StreamingResponse(relay_chunks(resp), status_code=resp.status_code, headers=headers, media_type=media)
