"""Preemption: pause a running generation for a waiting suggestion, resume it as a continuation.

A model server with one slot runs one generation at a time; a suggestion that
arrives while a chat answer streams waits until the chat is done, and by then
the user has typed on. So when a suggestion waits and the slot is busy with a
lower class that is generating (see upstreams/scheduling.py), the flight of that
generation *pauses*: it closes its upstream request (the server stops there),
gives the slot back, and when the slot is its again it *resumes* by asking for
the rest of the same answer:

- Ollama `/api/generate` with `raw: true`: the prompt plus the text generated so far.
- Ollama `/api/chat`: the partial answer as a trailing assistant message. Ollama
  continues it: its template code (template/template.go, `Execute`) renders a
  trailing assistant message as the response so far and cuts the template right
  after `.Response` for prompt/response templates, and the library's messages
  templates close an assistant turn only when it is not the last message.
- OpenAI-compatible servers (`openai`, `llamacpp` kinds) `/api/generate`: it is
  a plain text completion there (/v1/completions, no template), so the prompt
  plus the text so far continues it. Their `/api/chat` is NOT paused:
  llama-cpp-python's chat formats (e.g. `gemma`) close a trailing assistant
  message and open a new model turn, so the answer would start over.
- Any other kind (Ollama's templated generate, OpenAI paths, `format`/`tools`
  requests) is not paused: a server that started a new turn instead of
  continuing would give the client a different answer.

The client sees one answer that merely paused: the resumed part's chunks follow
the ones it already has (only complete chunks were passed on, so nothing is
repeated), `num_predict` shrinks by what was produced, and the final chunk
covers the whole answer (`eval_count`, `eval_duration` and `total_duration`
summed, `done_reason` of the last part). Stream clients see nothing while
paused; the pause is bounded by the suggestions ahead of it and by ageing in the
scheduler (about AGE_STEP_S / 2 at most while suggestions keep coming).

Exactness. A reproducible request (temperature 0, or a seed) must get the same answer
paused or not. Measured on the real model (llama-cpp-python, Gemma 3 270M, 2 threads):
the prompt plus the partial text re-tokenizes to the same tokens and greedy decoding
continues identically, but only with neutral repetition penalties: the servers' default
`repeat_penalty` (1.1 in Ollama and llama-cpp-python) looks back over the tokens
*generated* so far, which after a resume are prompt tokens, and the answer diverged a
few tokens after the cut. So a reproducible request is paused only when it sets
`repeat_penalty` 1 and no presence/frequency penalty; a sampled one (temperature above 0,
no seed) is a random draw either way and may be paused as it is.

Bounds: a generation is paused only while it is generating (not while the server
evaluates its prompt), when it still has at least `MIN_REMAINING_S` to go (from
its `num_predict`, or `EXPECTED_TOKENS`, and its measured tokens/s), at most
once per `MIN_INTERVAL_S`, and never after it was resumed `MAX_RESUMES` times.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

MIN_REMAINING_S = 1.0  # seconds of generation left below which pausing is not worth it
MIN_INTERVAL_S = 3.0  # seconds between a resume and the next pause of the same request
MAX_RESUMES = 2  # a request resumed this often is never paused again
EXPECTED_TOKENS = 256  # answer length assumed when the request sets no num_predict
RESUMABLE = {
    ("ollama", "/api/chat"),
    ("ollama", "/api/generate"),
    ("openai", "/api/generate"),
    ("llamacpp", "/api/generate"),
}
NOT_CONTINUABLE_FIELDS = ("format", "tools", "think", "images", "context", "template", "suffix")
PLAIN_COMPLETION_KINDS = ("openai", "llamacpp")  # generate is a plain text completion there


def _exact_after_resume(body: dict[str, Any]) -> bool:
    """A reproducible request continues token for token only without repetition penalties."""
    raw = body.get("options")
    opts: dict[str, Any] = raw if isinstance(raw, dict) else {}
    reproducible = opts.get("temperature") == 0 or opts.get("seed") is not None
    if not reproducible:
        return True  # a sampled answer: the continuation is as valid a draw as the original
    neutral = opts.get("repeat_penalty") in (1, 1.0)
    return neutral and not opts.get("presence_penalty") and not opts.get("frequency_penalty")


def resumable(upstream_kind: str, path: str, body: dict[str, Any]) -> bool:
    """Whether a generation of this kind can be paused and continued token for token."""
    if (upstream_kind, path) not in RESUMABLE:
        return False
    if any(body.get(f) for f in NOT_CONTINUABLE_FIELDS) or not _exact_after_resume(body):
        return False
    if path == "/api/generate":
        plain = bool(body.get("raw")) or (upstream_kind in PLAIN_COMPLETION_KINDS and not body.get("system"))
        return plain and isinstance(body.get("prompt"), str) and bool(body.get("prompt"))
    messages = body.get("messages")
    return isinstance(messages, list) and bool(messages) and all(isinstance(m, dict) for m in messages)


def _num_predict(body: dict[str, Any]) -> int:
    opts = body.get("options")
    n = opts.get("num_predict") if isinstance(opts, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0


def chunk_text(api: str, line: bytes) -> str:
    """The answer text one NDJSON chunk carries (generate: response, chat: message.content)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    if api == "chat":
        msg = doc.get("message")
        return str(msg.get("content") or "") if isinstance(msg, dict) else ""
    return str(doc.get("response") or "")


def continuation(path: str, body: dict[str, Any], text: str, produced: int) -> dict[str, Any]:
    """The request that asks for the rest of the answer whose first `text` we have."""
    out = dict(body)
    if path == "/api/generate":
        out["prompt"] = body["prompt"] + text
    else:
        messages = list(body["messages"])
        last = messages[-1]
        if last.get("role") == "assistant":  # the client's own prefill: extend it
            messages[-1] = dict(last, content=str(last.get("content") or "") + text)
        else:
            messages.append({"role": "assistant", "content": text})
        out["messages"] = messages
    n = _num_predict(body)
    if n:
        out["options"] = dict(body["options"], num_predict=max(1, n - produced))
    return out


class PauseState:
    """One flight's pausing: the scheduler asks, the flight pauses and resumes (scheduling.Pausable)."""

    def __init__(self, path: str, body: dict[str, Any]) -> None:
        self.path = path
        self.api = "chat" if path == "/api/chat" else "generate"
        self.original = body
        self.num_predict = _num_predict(body)
        self.requested = asyncio.Event()
        self.resumes = 0
        self.last_resume = float("-inf")
        self.first_token_at: float | None = None  # this part's first token (time.monotonic)
        self.part_tokens = 0  # content chunks in the running part
        self.tokens_before = 0  # content chunks of the finished parts
        self.text = ""  # the answer text of the finished parts
        self.eval_s_before = 0.0  # generation seconds of the finished parts
        self.wall_s_before = 0.0  # seconds the finished parts ran (pauses excluded)
        self.part_started = time.monotonic()
        self.paused_s = 0.0

    # ------------------------------------------------------------ the scheduler's side
    def can_pause(self, now: float) -> bool:
        if self.resumes >= MAX_RESUMES or now - self.last_resume < MIN_INTERVAL_S:
            return False
        if self.first_token_at is None or self.part_tokens == 0:
            return False  # still evaluating the prompt: pausing would throw that work away
        return self.remaining_s(now) >= MIN_REMAINING_S

    def remaining_s(self, now: float) -> float:
        produced = self.tokens_before + self.part_tokens
        expected = self.num_predict or max(EXPECTED_TOKENS, produced * 2)
        left = max(0, expected - produced)
        if self.first_token_at is None or self.part_tokens == 0:
            return float(left)  # no rate yet: count a token a second
        rate = self.part_tokens / max(now - self.first_token_at, 1e-3)
        return left / rate

    def request_pause(self) -> None:
        self.requested.set()

    # ------------------------------------------------------------ the flight's side
    def token(self, now: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = now
        self.part_tokens += 1

    def paused(self, part_chunks: list[bytes], now: float) -> dict[str, Any] | None:
        """The running part ended by a pause: the continuation body (None: nothing to resume)."""
        self.text += "".join(chunk_text(self.api, c) for c in part_chunks)
        self.tokens_before += self.part_tokens
        if self.first_token_at is not None:
            self.eval_s_before += now - self.first_token_at
        self.wall_s_before += now - self.part_started
        self.part_tokens = 0
        self.first_token_at = None
        self.requested = asyncio.Event()
        if self.num_predict and self.tokens_before >= self.num_predict:
            return None
        return continuation(self.path, self.original, self.text, self.tokens_before)

    def resumed(self, now: float, waited_s: float) -> None:
        self.resumes += 1
        self.last_resume = now
        self.part_started = now
        self.paused_s += waited_s

    def stitch_final(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The last part's final chunk, with counts that cover the whole answer."""
        if not self.resumes:
            return doc
        out = dict(doc)
        if isinstance(doc.get("eval_count"), int):
            out["eval_count"] = doc["eval_count"] + self.tokens_before
        if isinstance(doc.get("eval_duration"), int):
            out["eval_duration"] = doc["eval_duration"] + int(self.eval_s_before * 1e9)
        if isinstance(doc.get("total_duration"), int):
            out["total_duration"] = doc["total_duration"] + int(self.wall_s_before * 1e9)
        return out
