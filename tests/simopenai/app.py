"""A simulated llama.cpp server (llama-server) and OpenAI-compatible server (vLLM, LM Studio).

Faithful where powergate reads it, after llama.cpp's tools/server/README.md and the
OpenAI API reference, and checked against the real llama-cpp-python server in
tests/real:
- `/v1/models` (llama.cpp: one model, its `id` the -m path or --alias, `meta` with
  n_params/size/n_ctx_train), LM Studio's `/api/v0/models` (`state`, `type`, `arch`);
- `/v1/completions`, `/v1/chat/completions` whole and as SSE (`data: {...}` events,
  a finish_reason chunk, a usage chunk when `stream_options.include_usage`, `data: [DONE]`);
  llama.cpp adds `timings` (prompt_n, prompt_ms, predicted_n, predicted_ms...);
- llama.cpp only: `/health` (503 `Loading model` while loading), `/props` (`total_slots`,
  `default_generation_settings`, `model_path`, `build_info`), `/slots` (`is_processing`,
  `next_token.n_decoded`), `/infill` (`input_prefix`, `input_suffix`, native events with
  `content`, `stop`, `stop_type`, `tokens_predicted`, `tokens_evaluated`, `timings`; 501
  `not_supported_error` for a model without FIM tokens);
- vLLM refuses `suffix` (400) and answers an unknown model with 404 NotFoundError, while
  llama.cpp serves its one model whatever name is asked (why powergate checks names);
- slots: at most `slots` generations at a time (others wait, as llama.cpp defers them);
  a client that closes its stream stops its generation (counted in `tokens_generated`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

VOCAB = ("return", " self", ".", "value", " =", " (", ")", " if", " x", " +", " 1", ":", "\n", "    ", " data", " None")
DEFAULT_TOKENS = 12
EMBED_DIM = 64
SSE = "text/event-stream"
FLAVOURS = ("llamacpp", "openai", "lmstudio")


@dataclass
class SimModel:
    id: str
    fim: bool = True  # has FIM tokens (llama.cpp /infill works)
    embedding: bool = False


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    tokens: int = 0
    closed_early: bool = False


@dataclass
class SimOpenAI:
    flavour: str = "llamacpp"
    models: tuple[SimModel, ...] = (SimModel("/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),)
    slots: int = 1
    loading_s: float = 0.0  # /health answers 503 this long after start
    token_delay_s: float = 0.0
    default_tokens: int = DEFAULT_TOKENS
    started: float = field(default_factory=time.monotonic)
    log: list[Call] = field(default_factory=list)
    tokens_generated: int = 0
    processing: int = 0
    max_processing: int = 0
    _sem: asyncio.Semaphore | None = None

    @property
    def loading(self) -> bool:
        return time.monotonic() - self.started < self.loading_s

    def model(self, name: str) -> SimModel | None:
        if self.flavour == "llamacpp":
            return self.models[0]  # llama-server answers with its one model, whatever the name
        return next((m for m in self.models if m.id == name), None)

    def text_for(self, prompt: str, n: int) -> list[str]:
        seed = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        return [VOCAB[(seed >> (4 * i)) % len(VOCAB)] for i in range(n)]


def _error(flavour: str, status: int, message: str, typ: str) -> JSONResponse:
    if flavour == "openai":  # vLLM's ErrorResponse
        return JSONResponse(
            {"object": "error", "message": message, "type": typ, "param": None, "code": status}, status_code=status
        )
    return JSONResponse({"error": {"code": status, "message": message, "type": typ}}, status_code=status)


def build_app(sim: SimOpenAI) -> Starlette:
    if sim.flavour not in FLAVOURS:
        raise ValueError(sim.flavour)

    def sem() -> asyncio.Semaphore:
        if sim._sem is None:
            sim._sem = asyncio.Semaphore(sim.slots)
        return sim._sem

    async def models(request: Request) -> Response:
        data = []
        for m in sim.models:
            row: dict[str, Any] = {"id": m.id, "object": "model", "created": 1735142223, "owned_by": "llamacpp"}
            if sim.flavour == "llamacpp":
                row["meta"] = {"n_params": 1_540_000_000, "size": 986_000_000, "n_ctx_train": 32768, "n_embd": 1536}
            data.append(row)
        return JSONResponse({"object": "list", "data": data})

    async def lmstudio_models(request: Request) -> Response:
        if sim.flavour != "lmstudio":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        data = [
            {
                "id": m.id,
                "object": "model",
                "type": "embeddings" if m.embedding else "llm",
                "publisher": "sim",
                "arch": "qwen2",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded" if i == 0 else "not-loaded",
                "max_context_length": 32768,
            }
            for i, m in enumerate(sim.models)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        if sim.flavour != "llamacpp":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if sim.loading:
            return _error("llamacpp", 503, "Loading model", "unavailable_error")
        return JSONResponse({"status": "ok"})

    async def props(request: Request) -> Response:
        if sim.flavour != "llamacpp":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse(
            {
                "default_generation_settings": {"id": 0, "id_task": -1, "n_ctx": 4096, "is_processing": False},
                "total_slots": sim.slots,
                "model_path": sim.models[0].id,
                "chat_template": "",
                "modalities": {"vision": False},
                "build_info": "b6000-sim",
                "is_sleeping": False,
            }
        )

    async def slots(request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "id": i,
                    "id_task": -1,
                    "n_ctx": 4096,
                    "is_processing": i < sim.processing,
                    "next_token": {"n_decoded": 0},
                }
                for i in range(sim.slots)
            ]
        )

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            doc = json.loads(await request.body())
        except ValueError:
            doc = None
        return doc if isinstance(doc, dict) else {}

    def timings(prompt_n: int, predicted_n: int) -> dict[str, Any]:
        return {
            "cache_n": 0,
            "prompt_n": prompt_n,
            "prompt_ms": 2.5,
            "prompt_per_token_ms": 2.5 / max(prompt_n, 1),
            "prompt_per_second": 400.0,
            "predicted_n": predicted_n,
            "predicted_ms": 10.0 * predicted_n,
            "predicted_per_token_ms": 10.0,
            "predicted_per_second": 100.0,
        }

    async def generate(call: Call, prompt: str, n: int, stop: list[str]) -> AsyncIterator[str]:
        """Tokens, one slot held; stops when the client goes away (the generator is closed)."""
        async with sem():
            sim.processing += 1
            sim.max_processing = max(sim.max_processing, sim.processing)
            try:
                text = ""
                for tok in sim.text_for(prompt, n):
                    if sim.token_delay_s:
                        await asyncio.sleep(sim.token_delay_s)
                    if any(s and s in text + tok for s in stop):
                        return
                    text += tok
                    call.tokens += 1
                    sim.tokens_generated += 1
                    yield tok
            finally:
                sim.processing -= 1

    def common(body: dict[str, Any]) -> tuple[int, list[str]]:
        n = body.get("max_tokens", body.get("n_predict", sim.default_tokens))
        n = sim.default_tokens if not isinstance(n, int) or n < 0 else n
        stop = body.get("stop") or []
        return n, [stop] if isinstance(stop, str) else list(stop)

    async def openai_route(request: Request) -> Response:
        chat = request.url.path.endswith("chat/completions")
        body = await body_of(request)
        if sim.loading:
            return _error(sim.flavour, 503, "Loading model", "unavailable_error")
        model = sim.model(str(body.get("model") or ""))
        if model is None:
            return _error(sim.flavour, 404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        if not chat and body.get("suffix") is not None and sim.flavour == "openai":
            return _error(sim.flavour, 400, "suffix is not currently supported", "BadRequestError")
        if chat:
            msgs = body.get("messages") or []
            prompt = json.dumps(msgs)
        else:
            prompt = str(body.get("prompt") or "")
        call = Call(request.url.path, body)
        sim.log.append(call)
        n, stop = common(body)
        prompt_n = max(1, len(prompt) // 4)
        cid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:12]
        obj = "chat.completion" if chat else "text_completion"
        mid = model.id
        tools = body.get("tools") or []
        usage = lambda k: {"prompt_tokens": prompt_n, "completion_tokens": k, "total_tokens": prompt_n + k}  # noqa: E731
        extra = {"timings": timings(prompt_n, 0)} if sim.flavour == "llamacpp" else {}

        if not body.get("stream"):
            text = "".join([t async for t in generate(call, prompt, n, stop)])
            finish = "length" if call.tokens >= n else "stop"
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if tools:
                    fn = tools[0]["function"]["name"]
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": fn, "arguments": '{"city": "Paris"}'},
                            }
                        ],
                    }
                    finish = "tool_calls"
                choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            doc = {
                "id": cid,
                "object": obj,
                "created": int(time.time()),
                "model": mid,
                "choices": [choice],
                "usage": usage(call.tokens),
            }
            if extra:
                doc["timings"] = timings(prompt_n, call.tokens)
            return JSONResponse(doc)

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            def ev(doc: dict[str, Any]) -> bytes:
                return b"data: " + json.dumps(doc).encode() + b"\n\n"

            base = {"id": cid, "object": obj + (".chunk" if chat else ""), "created": int(time.time()), "model": mid}
            if chat:
                yield ev(
                    base
                    | {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    }
                )
            try:
                async for tok in generate(call, prompt, n, stop):
                    if chat:
                        yield ev(
                            base
                            | {
                                "choices": [
                                    {"index": 0, "delta": {"content": tok}, "logprobs": None, "finish_reason": None}
                                ]
                            }
                        )
                    else:
                        yield ev(
                            base | {"choices": [{"text": tok, "index": 0, "logprobs": None, "finish_reason": None}]}
                        )
            except (asyncio.CancelledError, GeneratorExit):
                call.closed_early = True
                raise
            finish = "length" if call.tokens >= n else "stop"
            if chat and tools:
                fn = tools[0]["function"]["name"]
                tc = [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": fn, "arguments": '{"city": "Paris"}'},
                    }
                ]
                yield ev(
                    base
                    | {"choices": [{"index": 0, "delta": {"tool_calls": tc}, "logprobs": None, "finish_reason": None}]}
                )
                finish = "tool_calls"
            last = (
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
                if chat
                else {"text": "", "index": 0, "logprobs": None, "finish_reason": finish}
            )
            tail: dict[str, Any] = {"timings": timings(prompt_n, call.tokens)} if sim.flavour == "llamacpp" else {}
            yield ev(base | {"choices": [last]} | tail)
            if include_usage:
                yield ev(base | {"choices": [], "usage": usage(call.tokens)})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type=SSE)

    async def infill(request: Request) -> Response:
        if sim.flavour != "llamacpp":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await body_of(request)
        model = sim.models[0]
        if not model.fim:
            return _error(
                "llamacpp",
                501,
                "Infill is not supported by this model: prefix token is missing. suffix token is missing. middle token is missing. ",
                "not_supported_error",
            )
        prompt = str(body.get("input_prefix", "")) + "<FIM>" + str(body.get("input_suffix", ""))
        call = Call("/infill", body)
        sim.log.append(call)
        n, stop = common(body)
        prompt_n = max(1, len(prompt) // 4)

        def final(content: str) -> dict[str, Any]:
            return {
                "index": 0,
                "content": content,
                "tokens": [],
                "id_slot": 0,
                "stop": True,
                "model": model.id,
                "tokens_predicted": call.tokens,
                "tokens_evaluated": prompt_n,
                "generation_settings": {"n_predict": n},
                "prompt": "",
                "has_new_line": "\n" in content,
                "truncated": False,
                "stop_type": "limit" if call.tokens >= n else "eos",
                "stopping_word": "",
                "tokens_cached": 0,
                "timings": timings(prompt_n, call.tokens),
            }

        if not body.get("stream"):
            text = "".join([t async for t in generate(call, prompt, n, stop)])
            return JSONResponse(final(text))

        async def events() -> AsyncIterator[bytes]:
            async for tok in generate(call, prompt, n, stop):
                doc = {
                    "index": 0,
                    "content": tok,
                    "tokens": [1],
                    "stop": False,
                    "id_slot": -1,
                    "tokens_predicted": call.tokens,
                    "tokens_evaluated": prompt_n,
                }
                yield b"data: " + json.dumps(doc).encode() + b"\n\n"
            yield b"data: " + json.dumps(final("")).encode() + b"\n\n"

        return StreamingResponse(events(), media_type=SSE)

    async def embeddings(request: Request) -> Response:
        body = await body_of(request)
        model = sim.model(str(body.get("model") or ""))
        if model is None:
            return _error(sim.flavour, 404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        sim.log.append(Call("/v1/embeddings", body))
        data = []
        for i, text in enumerate(inputs):
            h = hashlib.sha256(str(text).encode()).digest()
            vec = [((h[j % 32] + j) % 17 - 8) / 8.0 for j in range(EMBED_DIM)]  # not normalised
            data.append({"object": "embedding", "embedding": vec, "index": i})
        n = sum(max(1, len(str(t)) // 4) for t in inputs)
        return JSONResponse(
            {"object": "list", "data": data, "model": model.id, "usage": {"prompt_tokens": n, "total_tokens": n}}
        )

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/api/v0/models", lmstudio_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/props", props, methods=["GET"]),
        Route("/slots", slots, methods=["GET"]),
        Route("/v1/completions", openai_route, methods=["POST"]),
        Route("/v1/chat/completions", openai_route, methods=["POST"]),
        Route("/infill", infill, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ]
    return Starlette(routes=routes)
