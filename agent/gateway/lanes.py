"""Lanes: the whole gateway API under /lane/{autocomplete,chat,bulk}/, with a fixed priority class.

A client that cannot say what its requests are for is given a base URL that says
it: LightRAG's indexing calls are background work, so its .env gets
``LLM_BINDING_HOST=http://127.0.0.1:11435/lane/bulk`` (its Ollama client keeps a
path in the host: ollama-python's ``_parse_host`` preserves it and httpx joins
``/api/chat`` onto it). Inside a lane every request is scheduled in the lane's
class whatever its model or kind, so an editor's suggestions overtake a re-index.

In the bulk lane chat answers are cached like completions (see `cache_chat_mode`):
the callers there (LightRAG's entity extraction, summaries, keyword extraction and
final answers) build their prompts deterministically from document text, so the
full prompt is the whole identity of the answer and an identical prompt may take
the stored answer. That is what LightRAG's own LLM cache does too, except that
ours survives `/documents/clear_cache` and is shared by every workspace.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.gateway.responses import error_body
from agent.upstreams.scheduling import AUTOCOMPLETE, BULK, CHAT

LANE_PREFIX = "/lane/"
LANES = {"autocomplete": AUTOCOMPLETE, "chat": CHAT, "bulk": BULK}
SCOPE_KEY = "powergate.lane"


def lane_of(request: Request) -> str | None:
    """The lane a request came in through, or None."""
    lane = request.scope.get(SCOPE_KEY)
    return lane if isinstance(lane, str) else None


def priority(request: Request, default: int) -> int:
    """The lane's priority class, or `default` outside lanes."""
    lane = lane_of(request)
    return LANES[lane] if lane is not None else default


def cache_chat_mode(request: Request, configured: str) -> str:
    """[cache] chat for this request: "always" in the bulk lane unless caching chat is off."""
    if lane_of(request) == "bulk" and configured != "never":
        return "always"
    return configured


class LaneMiddleware:
    """Strips /lane/<name> from the path and remembers the lane for the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(LANE_PREFIX):
            await self.app(scope, receive, send)
            return
        name, _, rest = path[len(LANE_PREFIX) :].partition("/")
        if name not in LANES:
            body = error_body(
                "/" + rest, f"unknown lane {name!r}; lanes are {', '.join('/lane/' + n for n in LANES)}", 404
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        inner = "/" + rest
        scope = dict(scope, path=inner, raw_path=inner.encode())
        scope[SCOPE_KEY] = name
        await self.app(scope, receive, send)
