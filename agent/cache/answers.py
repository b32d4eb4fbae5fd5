"""Stored chunks -> what a client asked for: a stream, or the whole answer.

Upstream is always asked to stream; the chunks are kept as raw JSON lines, so a
streamed and a non-streamed request share one cache entry and one upstream call.
The whole answer is assembled exactly as Ollama assembles it for stream=false.
"""

from __future__ import annotations

import json
import time
from typing import Any

from agent.cache.keys import SSE_APIS

DONE_LINE = b"data: [DONE]\n\n"


def is_sse(api: str) -> bool:
    return api in SSE_APIS


def chunk_is_final(api: str, chunk: dict[str, Any]) -> bool:
    if is_sse(api):
        return any(c.get("finish_reason") for c in chunk.get("choices") or [])
    return chunk.get("done") is True


def stream_bytes(api: str, chunks: list[bytes], include_usage: bool = True, done_marker: bool = True) -> bytes:
    if not is_sse(api):
        return b"".join(c + b"\n" for c in chunks)
    out = []
    for c in chunks:
        if not include_usage and b'"choices":[]' in c:
            continue  # the usage-only chunk we asked for on the client's behalf
        out.append(b"data: " + c + b"\n\n")
    if done_marker:
        out.append(DONE_LINE)
    return b"".join(out)


def _join(parts: list[str | None]) -> str:
    return "".join(p for p in parts if p)


def whole_to_chunks(api: str, whole: bytes) -> list[bytes]:
    """A whole answer as stream chunks. Ollama's whole answer is itself a valid final
    chunk; an OpenAI one becomes a content chunk, a finish chunk and a usage chunk."""
    if not is_sse(api):
        return [whole]
    doc = json.loads(whole)
    choice = (doc.get("choices") or [{}])[0]
    base = {k: doc.get(k) for k in ("id", "created", "model", "system_fingerprint")}
    if api == "v1chat":
        base["object"] = "chat.completion.chunk"
        msg = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [dict(tc, index=i) for i, tc in enumerate(msg["tool_calls"])]
        first = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
        last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}])
    else:
        base["object"] = "text_completion"
        first = dict(base, choices=[{"text": choice.get("text") or "", "index": 0, "finish_reason": None}])
        last = dict(base, choices=[{"text": "", "index": 0, "finish_reason": choice.get("finish_reason") or "stop"}])
    out = [first, last]
    if doc.get("usage"):
        out.append(dict(base, choices=[], usage=doc["usage"]))
    return [json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode() for d in out]


def assemble(api: str, chunks: list[bytes], docs: list[dict[str, Any]] | None = None) -> bytes:
    if docs is None:
        docs = [json.loads(c) for c in chunks]
    if not docs:
        raise ValueError("no chunks")
    if api == "generate":
        whole = dict(docs[-1])
        whole["response"] = _join([d.get("response") for d in docs])
        thinking = _join([d.get("thinking") for d in docs])
        if thinking:
            whole["thinking"] = thinking
    elif api == "chat":
        whole = dict(docs[-1])
        msg = dict(whole.get("message") or {"role": "assistant"})
        msg["content"] = _join([(d.get("message") or {}).get("content") for d in docs])
        thinking = _join([(d.get("message") or {}).get("thinking") for d in docs])
        if thinking:
            msg["thinking"] = thinking
        calls = [tc for d in docs for tc in ((d.get("message") or {}).get("tool_calls") or [])]
        if calls:
            msg["tool_calls"] = calls
        whole["message"] = msg
    elif api == "v1chat":
        whole = _assemble_v1chat(docs)
    elif api == "v1completion":
        first = docs[0]
        finish = next(
            (c.get("finish_reason") for d in docs for c in d.get("choices") or [] if c.get("finish_reason")), None
        )
        text = _join([c.get("text") for d in docs for c in d.get("choices") or []])
        whole = {
            "id": first.get("id"),
            "object": "text_completion",
            "created": first.get("created"),
            "model": first.get("model"),
            "system_fingerprint": first.get("system_fingerprint"),
            "choices": [{"text": text, "index": 0, "finish_reason": finish}],
        }
        usage = next((d["usage"] for d in docs if d.get("usage")), None)
        if usage:
            whole["usage"] = usage
    else:
        raise ValueError(f"unknown api {api}")
    return json.dumps(whole, separators=(",", ":"), ensure_ascii=False).encode()


def _assemble_v1chat(docs: list[dict[str, Any]]) -> dict[str, Any]:
    first = docs[0]
    content: list[str | None] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for d in docs:
        for c in d.get("choices") or []:
            delta = c.get("delta") or {}
            content.append(delta.get("content"))
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(
                    tc.get("index", len(calls)),
                    {"id": tc.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
                )
                fn = tc.get("function") or {}
                slot["id"] = slot["id"] or tc.get("id")
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                finish = c["finish_reason"]
    message: dict[str, Any] = {"role": "assistant", "content": _join(content)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    whole: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "system_fingerprint": first.get("system_fingerprint"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    usage = next((d["usage"] for d in docs if d.get("usage")), None)
    if usage:
        whole["usage"] = usage
    return whole


def completion_text(api: str, chunks: list[bytes], docs: list[dict[str, Any]] | None = None) -> str:
    """The generated text of a completion (for typeahead)."""
    out = []
    for d in docs if docs is not None else (json.loads(c) for c in chunks):
        if api == "generate":
            out.append(d.get("response") or "")
        else:
            out.extend(ch.get("text") or "" for ch in d.get("choices") or [])
    return "".join(out)


def synth_completion(api: str, model: str, text: str, source: list[bytes]) -> list[bytes]:
    """Chunks of a completion made of `text`, shaped like the stored `source` answer."""
    last = json.loads(source[-1])
    if api == "generate":
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        final = {k: v for k, v in last.items() if k not in ("context",)}
        final.update({"model": model, "created_at": now, "response": "", "done": True})
        for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            if k in final:
                final[k] = 0
        body = {"model": model, "created_at": now, "response": text, "done": False}
        return [json.dumps(body, ensure_ascii=False).encode(), json.dumps(final, ensure_ascii=False).encode()]
    first = json.loads(source[0])
    finish = next((c.get("finish_reason") for c in last.get("choices") or [] if c.get("finish_reason")), "stop")
    base = {
        "id": first.get("id"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": first.get("system_fingerprint"),
    }
    a = dict(base, choices=[{"text": text, "index": 0, "finish_reason": None}])
    b = dict(base, choices=[{"text": "", "index": 0, "finish_reason": finish}])
    return [json.dumps(a, ensure_ascii=False).encode(), json.dumps(b, ensure_ascii=False).encode()]
