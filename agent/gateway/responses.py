"""Error answers in each API's own format, and the powergate headers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

NDJSON = "application/x-ndjson"  # exactly, no charset: some clients compare the whole value
SSE = "text/event-stream"
# Whole JSON answers carry the Content-Type Ollama sends: gin's c.JSON on /api/* adds a
# charset, the OpenAI middleware on /v1/* sets plain "application/json".
JSON_OLLAMA = "application/json; charset=utf-8"
JSON_OPENAI = "application/json"

H_CACHE = "X-Powergate-Cache"
H_MODEL = "X-Powergate-Model"
H_PROFILE = "X-Powergate-Profile"
H_UPSTREAM = "X-Powergate-Upstream"  # the URL of the host that answered
NO_UPSTREAM = "none"  # X-Powergate-Upstream of an answer no host gave (cache hits, errors before any host)
NO_MODEL = "none"  # X-Powergate-Model of an answer no model produced (tags, version, errors before routing)


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def json_media(path: str) -> str:
    """The Content-Type of a whole JSON answer on this path, as Ollama sends it."""
    return JSON_OPENAI if is_openai_path(path) else JSON_OLLAMA


def error_body(path: str, message: str, status: int, *, param: str | None = None, code: str | None = None) -> bytes:
    if is_openai_path(path):
        typ = "invalid_request_error" if 400 <= status < 500 else "api_error"
        if status == 404:
            typ = "not_found_error" if code is None else typ
        return json.dumps({"error": {"message": message, "type": typ, "param": param, "code": code}}).encode()
    return json.dumps({"error": message}).encode()


def error_response(
    path: str,
    message: str,
    status: int,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(path, message, status, param=param),
        status_code=status,
        media_type=json_media(path),
        headers=headers,
    )


def header_safe(value: str) -> str:
    """A client-chosen name as a header value: printable ASCII as is, anything else
    percent-encoded (a header cannot carry `\r\n` or characters beyond latin-1)."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%"))


def powergate_headers(cache: str, model: str, profile: str) -> dict[str, str]:
    return {
        H_CACHE: cache,
        H_MODEL: header_safe(model) or NO_MODEL,
        H_PROFILE: header_safe(profile),
        H_UPSTREAM: NO_UPSTREAM,
    }


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
