"""Host, Origin and body-size checks, as one pure ASGI middleware.

The Host and Origin rules copy Ollama's (server/routes.go allowedHostsMiddleware
and envconfig.AllowedOrigins) so that a page in the user's browser cannot use
DNS rebinding or a cross-site request to reach the models or change the agent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.gateway.responses import error_body

LOCAL_TLDS = (".localhost", ".local", ".internal")
LOCAL_NAMES = ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")
# Browser-ish origins of local tools: editor webviews, Electron/Tauri apps, files.
APP_ORIGIN_PATTERNS = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
UNLIMITED_BODY_PREFIXES = ("/api/blobs/",)  # model blobs are gigabytes; streamed through
# What Ollama's preflight allows (gin-contrib/cors DefaultConfig + server/routes.go AllowHeaders,
# with the OpenAI SDK's headers), plus our own request headers.
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
CORS_HEADERS = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "User-Agent",
        "Accept",
        "X-Requested-With",
        "OpenAI-Beta",
        "x-stainless-arch",
        "x-stainless-async",
        "x-stainless-custom-poll-interval",
        "x-stainless-helper-method",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-poll-helper",
        "x-stainless-retry-count",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-timeout",
        "Cache-Control",
        "X-Powergate-Token",
    )
)
CORS_EXPOSE = "X-Powergate-Cache, X-Powergate-Model, X-Powergate-Profile"


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: `/api/x/../generate` is `/api/generate`. Routing, cache,
    scheduling and caps must see the path the upstream will act on."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    joined = "/".join(out)
    return joined if joined.startswith("/") else "/" + joined


def bad_path_char(path: str) -> str | None:
    """The first control character in a path (NUL, CR, LF...), which no route has and
    which would break the upstream request line."""
    for c in path:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            return c
    return None


def default_origin_patterns() -> tuple[str, ...]:
    pats = []
    for name in LOCAL_NAMES:
        for scheme in ("http", "https"):
            pats.append(f"{scheme}://{name}")
            pats.append(f"{scheme}://{name}:*")
    return (*pats, *APP_ORIGIN_PATTERNS)


def _split_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def host_allowed(host_header: str, hostname: str | None = None) -> bool:
    """Ollama's rule: loopback, private or unspecified IPs, localhost, the machine's name,
    and names under .localhost/.local/.internal."""
    host = _split_host(host_header)
    if host in ("", "localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local
    machine = (hostname if hostname is not None else socket.gethostname()).lower()
    if host == machine:
        return True
    return host.endswith(LOCAL_TLDS)


def origin_pattern(pattern: str) -> re.Pattern[str]:
    """An allowed_origins pattern as a regex: `*` is the only wildcard (as in Ollama's
    OLLAMA_ORIGINS); everything else is literal, so `[::1]` is an IPv6 host, not a
    character class as fnmatch would read it."""
    return re.compile(".*".join(re.escape(part) for part in pattern.lower().split("*")), re.DOTALL)


class OriginPolicy:
    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.patterns = (*default_origin_patterns(), *extra)
        self._exact = {p.lower() for p in self.patterns if "*" not in p}
        self._wild = [origin_pattern(p) for p in self.patterns if "*" in p]

    def allowed(self, origin: str) -> bool:
        raw = origin.lower()
        o = raw.rstrip("/") if not raw.endswith("://") else raw
        if o in self._exact:
            return True
        return any(p.fullmatch(o) for p in self._wild)


class SecurityMiddleware:
    """Rejects foreign Hosts (403), cross-site Origins (403) and oversized bodies (413);
    answers CORS preflights for allowed origins."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        check_host: bool = True,
        allowed_origins: Iterable[str] = (),
        hostname: str | None = None,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.check_host = check_host
        self.origins = OriginPolicy(allowed_origins)
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.extra_headers = extra_headers

    async def _reject(
        self, send: Send, path: str, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body = error_body(path, message, status)
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        hdrs += list(self.extra_headers) + (headers or [])
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        bad = bad_path_char(path)
        if bad is not None:
            await self._reject(send, path, 400, f"invalid character {bad!r} in the path")
            return
        clean = remove_dot_segments(path)
        if clean != path:
            scope = dict(scope, path=clean, raw_path=quote(clean).encode("ascii"))
            path = clean
        host = ""
        origin = None
        content_length = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
            elif k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"content-length":
                content_length = v
        if self.check_host and not host_allowed(host, self.hostname):
            await self._reject(
                send, path, 403, f"host {host!r} is not allowed (powergate answers only local names, like Ollama)"
            )
            return
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if not self.origins.allowed(origin):
                await self._reject(
                    send,
                    path,
                    403,
                    f"origin {origin!r} is not allowed; add it to [server] allowed_origins if you trust it",
                )
                return
            cors = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
                (b"access-control-expose-headers", CORS_EXPOSE.encode()),
            ]
            if scope["method"] == "OPTIONS":
                hdrs = (
                    cors
                    + [
                        (b"access-control-allow-methods", CORS_METHODS.encode()),
                        (b"access-control-allow-headers", CORS_HEADERS.encode()),
                        (b"access-control-max-age", b"43200"),
                        (b"content-length", b"0"),
                    ]
                    + list(self.extra_headers)
                )
                await send({"type": "http.response.start", "status": 204, "headers": hdrs})
                await send({"type": "http.response.body", "body": b""})
                return

        limited = not path.startswith(UNLIMITED_BODY_PREFIXES)
        if limited and content_length is not None:
            try:
                too_big = int(content_length) > self.max_body
            except ValueError:
                await self._reject(send, path, 400, "invalid Content-Length")
                return
            if too_big:
                await self._reject(
                    send,
                    path,
                    413,
                    f"request body is larger than the limit of {self.max_body} bytes ([server] max_body_mb)",
                )
                return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                if cors:
                    message = dict(message)
                    message["headers"] = list(message.get("headers", [])) + cors
            await send(message)

        if not limited or content_length is not None:
            await self.app(scope, receive, send_wrapper if cors else send)
            return

        # A chunked body without Content-Length: read it here, bounded, then replay it, so
        # that an oversized body is refused before any handler has started answering.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_body:
                await self._reject(
                    send,
                    path,
                    413,
                    f"request body is larger than the limit of {self.max_body} bytes ([server] max_body_mb)",
                )
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_wrapper)
