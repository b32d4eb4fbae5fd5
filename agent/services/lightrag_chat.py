"""Model `lightrag`: an editor's chat answered by LightRAG's /query, through the query cache.

The editor picks the model name `lightrag` in its Ollama (/api/chat) or OpenAI
(/v1/chat/completions) settings. The last user message is the question, earlier
turns go as LightRAG's conversation_history, system messages as its user_prompt.
The query mode is the profile's `lightrag_mode`: `mix` (knowledge graph and
chunks: one LLM call for keywords, one for the answer) on AC, `naive` (chunks only:
one LLM call, no keyword extraction) in battery-saver.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.cache.answers import stream_bytes, whole_to_chunks
from agent.cache.keys import API_BY_PATH
from agent.errors import BadRequest, PowergateError, UpstreamError
from agent.gateway import proxy
from agent.gateway.responses import H_CACHE, NDJSON, SSE, error_response, powergate_headers
from agent.profiles import Profile
from agent.services.lightrag import MODEL, LightRAGFront

CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def query_body(path: str, body: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """The LightRAG /query request for a chat request (raises BadRequest)."""
    if path not in CHAT_PATHS:
        raise BadRequest(f"model {MODEL!r} answers chat only (/api/chat, /v1/chat/completions)", param="model")
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user" and _text(m.get("content")).strip()]
    if not users:
        raise BadRequest(f"model {MODEL!r} needs a user message to ask LightRAG", param="messages")
    last = users[-1]
    history = [
        {"role": str(m.get("role")), "content": _text(m.get("content"))}
        for m in messages[:last]
        if m.get("role") in ("user", "assistant")
    ]
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system").strip()
    query: dict[str, Any] = {
        "query": _text(messages[last].get("content")),
        "mode": profile.lightrag_mode,
        "include_references": False,
    }
    if history:
        query["conversation_history"] = history
    if system:
        query["user_prompt"] = system
    return query


def whole_answer(path: str, text: str, started: float, took_s: float) -> bytes:
    """The answer as the client's API returns a whole (stream=false) chat answer."""
    if path == "/v1/chat/completions":
        doc: dict[str, Any] = {
            "id": f"chatcmpl-lightrag-{int(started * 1000) % 1_000_000}",
            "object": "chat.completion",
            "created": int(started),
            "model": MODEL,
            "system_fingerprint": "powergate-lightrag",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
    else:
        doc = {
            "model": MODEL,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "total_duration": int(took_s * 1e9),
        }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


async def answer(
    front: LightRAGFront, path: str, body: dict[str, Any], profile: Profile, no_read: bool, no_store: bool
) -> tuple[bytes, str]:
    """(the whole answer in the client's API, X-Powergate-Cache); raises BadRequest or UpstreamError."""
    started, t0 = time.time(), time.perf_counter()
    got = await front.query(query_body(path, body, profile), no_read=no_read, no_store=no_store)
    try:
        doc = json.loads(got.body)
    except ValueError:
        doc = None
    if got.status != 200 or not isinstance(doc, dict):
        detail = doc.get("detail") if isinstance(doc, dict) else None
        message = detail if isinstance(detail, str) else got.body.decode("utf-8", "replace")[:300]
        raise UpstreamError(f"LightRAG answered {got.status}: {message}", url=front.url)
    text = str(doc.get("response") or "")
    return whole_answer(path, text, started, time.perf_counter() - t0), got.outcome


async def respond(
    request: Request, front: LightRAGFront | None, path: str, body: dict[str, Any], profile: Profile
) -> Response:
    """The gateway's answer to a chat request for model `lightrag`, streamed or whole as asked."""
    headers = powergate_headers("miss", MODEL, profile.name)
    if front is None:
        headers[H_CACHE] = "bypass"
        msg = f"model {MODEL!r} needs a LightRAG server: set [lightrag] url in powergate's config"
        return error_response(path, msg, 404, headers=headers)
    cc = request.headers.get("cache-control", "").lower()
    try:
        whole, outcome = await proxy.until_done(
            request, answer(front, path, body, profile, "no-cache" in cc, "no-store" in cc)
        )
    except proxy.ClientGone:
        return Response(status_code=499)
    except PowergateError as exc:
        headers[H_CACHE] = "bypass"
        param = exc.param if isinstance(exc, BadRequest) else None
        return error_response(path, str(exc), getattr(exc, "status_code", 502), param=param, headers=headers)
    headers[H_CACHE] = outcome
    openai = path.startswith("/v1/")
    if body.get("stream", not openai) is False:
        return Response(whole, media_type="application/json", headers=headers)
    api = API_BY_PATH[path]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if openai else True
    content = stream_bytes(api, whole_to_chunks(api, whole), include_usage)
    return Response(content, media_type=SSE if openai else NDJSON, headers=headers)
