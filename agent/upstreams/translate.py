"""Ollama's dialect to the OpenAI dialect and back: requests, whole answers, streams, errors.

Pure functions (no I/O) shared by the OpenAI-compatible and llama.cpp backends.
Answers come back in Ollama's shape: NDJSON chunks, and a final chunk with
`done`, `done_reason`, `eval_count`, `prompt_eval_count` and durations in
nanoseconds, from the server's usage and timings (llama.cpp) or, where a server
reports no timings, from the wall clock.

Options with an equivalent are mapped (OLLAMA_TO_OPENAI); the others are
dropped (DROPPED_OPTIONS; README "Upstream kinds" lists them).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# Ollama option -> OpenAI-compatible request field (llama.cpp, llama-cpp-python and LM Studio
# read top_k, min_p, repeat_penalty and typical_p too; vLLM reads top_k and min_p).
OLLAMA_TO_OPENAI = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
# Ollama options with no equivalent on an OpenAI-compatible server: the server was started
# with its own context, threads and GPU layers, and they cannot change per request.
DROPPED_OPTIONS = (
    "num_ctx",
    "num_thread",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_keep",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "tfs_z",
    "penalize_newline",
    "numa",
    "low_vram",
)
FINISH_TO_DONE = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}
IMAGE_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def map_options(options: Any, max_tokens_key: str = "max_tokens") -> dict[str, Any]:
    """Ollama `options` as request fields of an OpenAI-compatible server (or llama.cpp's native ones)."""
    out: dict[str, Any] = {}
    if not isinstance(options, dict):
        return out
    for k, v in options.items():
        if k == "num_predict":
            if isinstance(v, int) and v >= 0:
                out[max_tokens_key] = v
        elif k in OLLAMA_TO_OPENAI and v is not None:
            out[OLLAMA_TO_OPENAI[k]] = v
    return out


def _image_part(b64: str) -> dict[str, Any]:
    media = next((m for magic, m in IMAGE_MAGIC if b64.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{b64}"}}


def chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Ollama chat messages as OpenAI messages: images as image parts, tool calls with ids."""
    out: list[dict[str, Any]] = []
    call_ids: dict[str, str] = {}  # tool name -> id of its latest call, for the tool's answer
    n = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        msg: dict[str, Any] = {"role": m.get("role", "user")}
        content = m.get("content") or ""
        images = m.get("images") or []
        if images:
            msg["content"] = [{"type": "text", "text": content}, *(_image_part(str(i)) for i in images)]
        else:
            msg["content"] = content
        calls = m.get("tool_calls") or []
        if calls:
            oc = []
            for c in calls:
                fn = (c or {}).get("function") or {}
                cid = f"call_{n}"
                n += 1
                call_ids[str(fn.get("name", ""))] = cid
                args = fn.get("arguments", {})
                oc.append(
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": fn.get("name", ""),
                            "arguments": args if isinstance(args, str) else json.dumps(args),
                        },
                    }
                )
            msg["tool_calls"] = oc
        if msg["role"] == "tool":
            name = str(m.get("tool_name") or m.get("name") or "")
            msg["tool_call_id"] = call_ids.get(name) or (f"call_{n - 1}" if n else "call_0")
        out.append(msg)
    return out


def response_format(fmt: Any) -> dict[str, Any] | None:
    """Ollama `format` ("json" or a JSON schema) as OpenAI's response_format."""
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def chat_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    req: dict[str, Any] = {"model": model, "messages": chat_messages(body.get("messages") or []), "stream": stream}
    if stream:
        req["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        req["tools"] = body["tools"]
    rf = response_format(body.get("format"))
    if rf is not None:
        req["response_format"] = rf
    req.update(map_options(body.get("options")))
    return req


def completion_request(body: dict[str, Any], model: str, prompt: str, stream: bool) -> dict[str, Any]:
    req: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
    if stream:
        req["stream_options"] = {"include_usage": True}
    req.update(map_options(body.get("options")))
    return req


# ------------------------------------------------------------------ answers


@dataclass
class Tally:
    """What the final chunk reports, gathered while the answer arrives."""

    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ms: float | None = None  # llama.cpp timings, when the server sends them
    predicted_ms: float | None = None
    done_reason: str = "stop"
    pieces: int = 0  # content chunks seen (a fallback count when the server reports no usage)

    def token(self) -> None:
        self.pieces += 1
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def usage(self, doc: dict[str, Any]) -> None:
        u = doc.get("usage")
        if isinstance(u, dict):
            self.prompt_tokens = int(u.get("prompt_tokens") or self.prompt_tokens)
            self.completion_tokens = int(u.get("completion_tokens") or self.completion_tokens)
        t = doc.get("timings")
        if isinstance(t, dict):
            self.prompt_ms = _num(t.get("prompt_ms"), self.prompt_ms)
            self.predicted_ms = _num(t.get("predicted_ms"), self.predicted_ms)
            self.prompt_tokens = int(t.get("prompt_n") or self.prompt_tokens)
            self.completion_tokens = int(t.get("predicted_n") or self.completion_tokens)

    def final_fields(self) -> dict[str, Any]:
        end = time.perf_counter()
        total = int((end - self.started) * NS_PER_S)
        first = self.first_token if self.first_token is not None else end
        prompt_ns = (
            int(self.prompt_ms * NS_PER_MS) if self.prompt_ms is not None else int((first - self.started) * NS_PER_S)
        )
        eval_ns = int(self.predicted_ms * NS_PER_MS) if self.predicted_ms is not None else int((end - first) * NS_PER_S)
        return {
            "done": True,
            "done_reason": self.done_reason,
            "total_duration": max(total, prompt_ns + eval_ns),
            "load_duration": 0,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": self.completion_tokens or self.pieces,
            "eval_duration": eval_ns,
        }


def _num(v: Any, default: float | None) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else default


def ollama_chunk(api: str, model: str, text: str = "", **extra: Any) -> dict[str, Any]:
    """One NDJSON chunk of Ollama's generate or chat stream."""
    doc: dict[str, Any] = {"model": model, "created_at": now_iso()}
    if api == "chat":
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        for k in ("thinking", "tool_calls"):
            if extra.get(k):
                msg[k] = extra.pop(k)
        extra.pop("thinking", None)
        extra.pop("tool_calls", None)
        doc["message"] = msg
    else:
        extra.pop("thinking", None)
        extra.pop("tool_calls", None)
        doc["response"] = text
    doc.setdefault("done", False)
    doc.update(extra)
    return doc


def ollama_tool_calls(calls: list[Any]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        fn = (c or {}).get("function") or {}
        args = fn.get("arguments") or "{}"
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = {"_raw": args}
        out.append({"function": {"name": fn.get("name", ""), "arguments": args}})
    return out


def line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def whole_answer(api: str, model: str, doc: dict[str, Any], tally: Tally) -> bytes:
    """A whole OpenAI answer (completion or chat) as Ollama's whole answer."""
    tally.usage(doc)
    choice = (doc.get("choices") or [{}])[0]
    tally.done_reason = FINISH_TO_DONE.get(str(choice.get("finish_reason") or "stop"), "stop")
    if api == "chat":
        msg = choice.get("message") or {}
        text = msg.get("content") or ""
        extra: dict[str, Any] = {}
        if msg.get("reasoning_content"):
            extra["thinking"] = msg["reasoning_content"]
        if msg.get("tool_calls"):
            extra["tool_calls"] = ollama_tool_calls(msg["tool_calls"])
    else:
        text, extra = choice.get("text") or "", {}
    tally.token()
    out = ollama_chunk(api, model, text, **extra)
    out.update(tally.final_fields())
    return line(out).rstrip(b"\n")


def ollama_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def error_message(content: bytes, status: int, label: str) -> str:
    """The message in an upstream's error body, whatever its shape."""
    try:
        doc = json.loads(content)
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        return f"{label} answered {status}: {text or 'no message'}"
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if isinstance(err, str):
        return err
    if isinstance(doc, dict) and isinstance(doc.get("detail"), (str, list)):  # FastAPI (llama-cpp-python)
        return str(doc["detail"])
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return f"{label} answered {status}"


class StreamTranslator:
    """OpenAI SSE events (or llama.cpp's native /infill events) in, Ollama NDJSON lines out."""

    def __init__(self, api: str, model: str, native: bool = False) -> None:
        self.api = api  # "generate" or "chat"
        self.model = model  # the name the client asked for
        self.native = native  # llama.cpp /completion or /infill events: content, stop, timings
        self.tally = Tally()
        self.calls: dict[int, dict[str, Any]] = {}
        self.finished = False
        self.saw_finish = False  # a finish_reason arrived (some servers end without [DONE])
        self.error = ""

    def feed(self, raw_line: bytes) -> bytes:
        """One upstream line; returns the NDJSON to send on (possibly empty)."""
        s = raw_line.strip()
        if not s.startswith(b"data:"):
            return b""  # SSE comments (llama.cpp pings), event names, blank lines
        data = s[5:].strip()
        if data == b"[DONE]":
            return self.finish()
        try:
            doc = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(doc, dict):
            return b""
        if "error" in doc:
            self.error = error_message(data, 500, "upstream")
            self.finished = True
            return line({"error": self.error})
        if self.native:
            return self._native(doc)
        self.tally.usage(doc)
        out = b""
        for choice in doc.get("choices") or []:
            if self.api == "chat":
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                thinking = delta.get("reasoning_content") or ""
                for tc in delta.get("tool_calls") or []:
                    slot = self.calls.setdefault(int(tc.get("index", 0)), {"function": {"name": "", "arguments": ""}})
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
            else:
                text, thinking = choice.get("text") or "", ""
            if text or thinking:
                self.tally.token()
                out += line(ollama_chunk(self.api, self.model, text, thinking=thinking))
            if choice.get("finish_reason"):
                self.saw_finish = True
                self.tally.done_reason = FINISH_TO_DONE.get(str(choice["finish_reason"]), "stop")
        return out

    def _native(self, doc: dict[str, Any]) -> bytes:
        out = b""
        text = doc.get("content") or ""
        if text:
            self.tally.token()
            out += line(ollama_chunk(self.api, self.model, text))
        if doc.get("stop"):
            self.tally.prompt_tokens = int(doc.get("tokens_evaluated") or 0)
            self.tally.completion_tokens = int(doc.get("tokens_predicted") or 0)
            self.tally.usage(doc)
            self.tally.done_reason = "length" if doc.get("stop_type") == "limit" else "stop"
            out += self.finish()
        return out

    def finish(self) -> bytes:
        """The final chunk (once), when the upstream says it is done."""
        if self.finished:
            return b""
        self.finished = True
        out = b""
        if self.calls:
            calls = [self.calls[i] for i in sorted(self.calls)]
            out += line(ollama_chunk(self.api, self.model, "", tool_calls=ollama_tool_calls(calls)))
        final = ollama_chunk(self.api, self.model, "")
        final.update(self.tally.final_fields())
        return out + line(final)
