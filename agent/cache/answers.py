"""Stored chunks -> what a client asked for: a stream, or the whole answer.

Upstream is always asked to stream; the chunks are kept as raw JSON lines, so a
streamed and a non-streamed request share one cache entry and one upstream call.
The whole answer is assembled exactly as Ollama assembles it for stream=false.
"""

from __future__ import annotations

import json
import re
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


def without_usage(chunk: bytes) -> bytes | None:
    """An OpenAI stream chunk as a client that did not ask for usage gets it from Ollama.

    We always ask Ollama for usage (the cache serves both kinds of client), and Ollama then
    puts a zero "usage" on every /v1/completions chunk and ends with a usage-only chunk
    ("choices": []). Decided by parsing, never by byte patterns: a completion may contain
    any text. None: drop the chunk."""
    try:
        doc = json.loads(chunk)
    except ValueError:
        return chunk
    if not isinstance(doc, dict) or "usage" not in doc:
        return chunk
    if doc.get("choices") == []:
        return None
    del doc["usage"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def stream_events(api: str, chunks: list[bytes], include_usage: bool = True, done_marker: bool = True) -> list[bytes]:
    """The stream as Ollama writes it: one NDJSON line / one SSE event per element, so
    that each is written (and flushed) on its own, like Ollama's one Write per chunk."""
    if not is_sse(api):
        return [c + b"\n" for c in chunks]
    out = []
    for c in chunks:
        kept = c if include_usage else without_usage(c)
        if kept is not None:
            out.append(b"data: " + kept + b"\n\n")
    if done_marker:
        out.append(DONE_LINE)
    return out


def split_events(api: str, content: bytes) -> list[bytes]:
    """A stored stream body back into its NDJSON lines / SSE events (one write each)."""
    sep = b"\n\n" if is_sse(api) else b"\n"
    return [part + sep for part in content.split(sep) if part]


def stream_bytes(api: str, chunks: list[bytes], include_usage: bool = True, done_marker: bool = True) -> bytes:
    return b"".join(stream_events(api, chunks, include_usage, done_marker))


# A replayed answer is stamped with the time it is served, as Ollama stamps each answer.
# Keys of JSON objects follow "{" or "," (and whitespace); inside a JSON string a quote is
# escaped ("\""), so these never match text that merely looks like the key.
_CREATED_AT = re.compile(rb'([{,]\s*"created_at"\s*:\s*)"[^"\\]*"')
_CREATED = re.compile(rb'([{,]\s*"created"\s*:\s*)\d+')


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def restamp(chunk: bytes, created_at: bytes, created: bytes) -> bytes:
    """The chunk with its created_at (Ollama) / created (OpenAI) set to now."""
    chunk = _CREATED_AT.sub(lambda m: m.group(1) + b'"' + created_at + b'"', chunk)
    return _CREATED.sub(lambda m: m.group(1) + created, chunk)


def restamp_all(chunks: list[bytes]) -> list[bytes]:
    now_iso = iso_now().encode()
    now_s = str(int(time.time())).encode()
    return [restamp(c, now_iso, now_s) for c in chunks]


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
        first_choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if choice.get("logprobs"):
            first_choice["logprobs"] = choice["logprobs"]
        first = dict(base, choices=[first_choice])
        last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}])
    else:
        base["object"] = "text_completion"
        text_choice: dict[str, Any] = {"text": choice.get("text") or "", "index": 0, "finish_reason": None}
        if choice.get("logprobs"):
            text_choice["logprobs"] = choice["logprobs"]
        first = dict(base, choices=[text_choice])
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
        _merge_logprobs(whole, docs)
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
        _merge_logprobs(whole, docs)
    elif api == "v1chat":
        whole = _assemble_v1chat(docs)
    elif api == "v1completion":
        first = docs[0]
        finish = next(
            (c.get("finish_reason") for d in docs for c in d.get("choices") or [] if c.get("finish_reason")), None
        )
        text = _join([c.get("text") for d in docs for c in d.get("choices") or []])
        choice: dict[str, Any] = {"text": text, "index": 0, "finish_reason": finish}
        logprobs = _choice_logprobs(docs)
        if logprobs is not None:
            choice["logprobs"] = logprobs
        whole = {
            "id": first.get("id"),
            "object": "text_completion",
            "created": first.get("created"),
            "model": first.get("model"),
            "system_fingerprint": first.get("system_fingerprint"),
            "choices": [choice],
        }
        usage = next((d["usage"] for d in docs if d.get("usage")), None)
        if usage:
            whole["usage"] = usage
    else:
        raise ValueError(f"unknown api {api}")
    return json.dumps(whole, separators=(",", ":"), ensure_ascii=False).encode()


def _merge_logprobs(whole: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """Ollama's whole answer carries the logprobs of every streamed chunk, in order."""
    merged = [lp for d in docs for lp in (d.get("logprobs") or [])]
    if merged:
        whole["logprobs"] = merged


def _choice_logprobs(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The OpenAI choice logprobs ({"content": [...]}) of a stream, joined."""
    content: list[Any] = []
    seen = False
    for d in docs:
        for c in d.get("choices") or []:
            lp = c.get("logprobs")
            if isinstance(lp, dict):
                seen = True
                content.extend(lp.get("content") or [])
    return {"content": content} if seen else None


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
                index = tc.get("index", len(calls))
                slot = calls.setdefault(
                    index,
                    {"id": tc.get("id"), "index": index, "type": "function", "function": {"name": "", "arguments": ""}},
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
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    logprobs = _choice_logprobs(docs)
    if logprobs is not None:
        choice["logprobs"] = logprobs
    whole: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "system_fingerprint": first.get("system_fingerprint"),
        "choices": [choice],
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


def served_tokens(text: str, source_text: str, source_tokens: int) -> int:
    """Tokens of `text`, estimated at the chars-per-token of the answer it was cut from."""
    if not text:
        return 0
    if not source_text or source_tokens <= 0:
        return max(1, round(len(text) / 4))  # about four characters a token for code and English
    return max(1, round(len(text) * source_tokens / len(source_text)))


def synth_completion(api: str, model: str, text: str, source: list[bytes]) -> list[bytes]:
    """Chunks of a completion made of `text`, shaped like the stored `source` answer.

    Its counts describe what it serves: eval_count / completion_tokens are the tokens of
    `text` (at the source's characters per token), durations are 0 (no model ran)."""
    last = json.loads(source[-1])
    docs = [json.loads(c) for c in source]
    source_text = completion_text(api, source, docs)
    if api == "generate":
        now = iso_now()
        final = {k: v for k, v in last.items() if k not in ("context", "logprobs")}
        final.update({"model": model, "created_at": now, "response": "", "done": True})
        for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            if k in final:
                final[k] = 0
        final["eval_count"] = served_tokens(text, source_text, int(last.get("eval_count") or 0))
        body = {"model": model, "created_at": now, "response": text, "done": False}
        return [json.dumps(body, ensure_ascii=False).encode(), json.dumps(final, ensure_ascii=False).encode()]
    first = docs[0]
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
    out = [a, b]
    usage = next((d["usage"] for d in reversed(docs) if isinstance(d.get("usage"), dict) and d["usage"]), None)
    if usage is not None:
        n = served_tokens(text, source_text, int(usage.get("completion_tokens") or 0))
        prompt = int(usage.get("prompt_tokens") or 0)
        out.append(
            dict(base, choices=[], usage={"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n})
        )
    return [json.dumps(d, ensure_ascii=False).encode() for d in out]
