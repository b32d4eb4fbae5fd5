"""The simulated Ollama's state and routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.simollama import binding

VERSION = "0.12.6"
DEFAULT_KEEP_ALIVE_S = 300.0
NDJSON = "application/x-ndjson"
RUNNER_OPTIONS = ("num_ctx", "num_thread", "num_batch", "num_gpu", "main_gpu", "use_mmap")
DEFAULT_NUM_CTX = 4096
MODEL_CONTEXT_LENGTH = 32768  # what /api/show's model_info says (llama-index sends it as num_ctx)
JSON_API = "application/json; charset=utf-8"  # gin's c.JSON on /api/*
JSON_V1 = "application/json"  # the OpenAI middleware's writers on /v1/*
# A missing model: the generate and embed handlers fall back to 404 "model '' not found",
# chat and the legacy embeddings answer 400 "model is required" (server/routes.go).
MODEL_REQUIRED_STATUS = {"/api/generate": 404, "/api/chat": 400, "/api/embed": 404, "/api/embeddings": 400}
STRUCTS = {
    "/api/generate": (binding.GENERATE, "GenerateRequest"),
    "/api/chat": (binding.CHAT, "ChatRequest"),
    "/api/embed": (binding.EMBED, "EmbedRequest"),
    "/api/embeddings": (binding.EMBEDDINGS, "EmbeddingRequest"),
    "/v1/chat/completions": (binding.OAI_CHAT, "ChatCompletionRequest"),
    "/v1/completions": (binding.OAI_COMPLETION, "CompletionRequest"),
    "/v1/embeddings": (binding.OAI_EMBED, "EmbedRequest"),
}
# /v1/* handlers behind the middleware: which native handler answers them
NATIVE_OF = {"/v1/chat/completions": "/api/chat", "/v1/completions": "/api/generate", "/v1/embeddings": "/api/embed"}
# A model answers from what it was given: the simulated one quotes every fact marker in
# its prompt (e.g. a document chunk LightRAG retrieved), so a new document is observable.
FACT_MARKER = re.compile(r"FACT-[A-Za-z0-9]+")
VOCAB = (
    "return",
    "self",
    "value",
    "=",
    "(",
    ")",
    "if",
    "else",
    "for",
    "in",
    "range",
    "data",
    "result",
    "None",
    "True",
    "x",
    "y",
    "+",
    "1",
    "0",
    ":",
    "def",
    "items",
    "append",
    "len",
    "print",
    "key",
    "dict",
    "list",
    "not",
    "and",
    "or",
    "while",
    "break",
    "import",
    "os",
)


@dataclass(frozen=True)
class SimModel:
    name: str
    family: str = "qwen2"
    parameter_size: str = "1.5B"
    size: int = 986_000_000
    embedding: bool = False
    dim: int = 768

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()


DEFAULT_MODELS = (
    SimModel("qwen2.5-coder:1.5b", parameter_size="1.5B", size=986_000_000),
    SimModel("qwen2.5-coder:7b", parameter_size="7.6B", size=4_683_000_000),
    SimModel("qwen2.5-coder:14b", parameter_size="14.8B", size=8_988_000_000),
    SimModel("nomic-embed-text:latest", family="nomic-bert", parameter_size="137M", size=274_000_000, embedding=True),
)


@dataclass
class Loaded:
    model: SimModel
    runner: tuple[Any, ...]
    expires_at: float  # time.time(); math.inf = forever
    active: int = 0


@dataclass
class LogEntry:
    path: str
    model: str
    body: dict[str, Any]
    started: float
    finished: float | None = None
    status: int = 200
    cancelled: bool = False
    tokens: int = 0
    loaded: bool = False  # this request paid a model load
    headers: dict[str, str] = field(default_factory=dict)


def parse_keep_alive(v: Any) -> float:
    """Seconds; negative = forever, 0 = unload now. Same forms Ollama accepts (api.Duration)."""
    return binding.keep_alive_seconds(v, DEFAULT_KEEP_ALIVE_S)


def _b64(vector: list[float]) -> str:
    """openai.ToEmbeddingList with encoding_format base64: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class OllamaError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class SimOllama:
    """State of one simulated Ollama: models, what is loaded, the queue, a request log."""

    def __init__(
        self,
        models: tuple[SimModel, ...] = DEFAULT_MODELS,
        *,
        load_time_s: float = 0.0,
        token_delay_s: float = 0.0,
        prompt_delay_s: float = 0.0,
        num_parallel: int = 1,
        max_queue: int = 512,
        default_tokens: int = 12,
        one_slot: bool = False,
    ) -> None:
        self.models = {m.name: m for m in models}
        self.load_time_s = load_time_s
        self.token_delay_s = token_delay_s
        self.prompt_delay_s = prompt_delay_s
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.default_tokens = default_tokens
        self.one_slot = one_slot  # a laptop where one runner at a time fits: every model shares it
        self.loaded: dict[str, Loaded] = {}
        self.loads = 0
        self.log: list[LogEntry] = []
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._pending = 0
        self.fail_next: list[tuple[int, str]] = []  # (status, message) to answer the next inference calls

    @classmethod
    def realistic(cls) -> SimOllama:
        return cls(load_time_s=2.0, token_delay_s=0.03, prompt_delay_s=0.02, one_slot=True)

    # ------------------------------------------------------------ lookups
    def resolve(self, name: Any) -> SimModel:
        if not isinstance(name, str) or not name:
            raise OllamaError(400, "model is required")
        m = self.models.get(name) or self.models.get(f"{name}:latest")
        if m is None:
            raise OllamaError(404, f"model '{name}' not found")
        return m

    def inference_log(self, include_loads: bool = False) -> list[LogEntry]:
        """Inference requests; load/unload-only calls (empty generate prompts) only if asked."""
        return [
            e
            for e in self.log
            if e.path in INFERENCE_PATHS
            and (e.body or e.finished)  # a request still reading its body is not known yet
            and (include_loads or not (e.path == "/api/generate" and e.body.get("prompt", "x") == ""))
        ]

    def _expire(self) -> None:
        t = time.time()
        for name in [n for n, lm in self.loaded.items() if lm.active == 0 and lm.expires_at <= t]:
            del self.loaded[name]

    # ------------------------------------------------------------ running
    def _slot(self, name: str) -> asyncio.Semaphore:
        if self.one_slot:
            name = "*"
        if name not in self._slots:
            self._slots[name] = asyncio.Semaphore(self.num_parallel)
        return self._slots[name]

    async def _acquire(self, model: SimModel, options: dict[str, Any], keep_alive: float, entry: LogEntry) -> Loaded:
        if self._pending >= self.max_queue:
            raise OllamaError(503, "server busy, please try again.  maximum pending requests exceeded")
        self._pending += 1
        try:
            await self._slot(model.name).acquire()
        finally:
            self._pending -= 1
        try:
            self._expire()
            runner = tuple(options.get(k) for k in RUNNER_OPTIONS)
            lm = self.loaded.get(model.name)
            if lm is None or lm.runner != runner:
                # Ollama reloads the runner whenever runner options differ.
                if lm is not None:
                    del self.loaded[model.name]
                entry.loaded = True
                self.loads += 1
                if self.load_time_s:
                    await asyncio.sleep(self.load_time_s)
                lm = Loaded(model, runner, math.inf)
                self.loaded[model.name] = lm
            lm.active += 1
            lm.expires_at = math.inf
            return lm
        except BaseException:
            self._slot(model.name).release()
            raise

    def _release(self, lm: Loaded, keep_alive: float) -> None:
        lm.active -= 1
        if keep_alive == 0:
            if lm.active == 0:
                self.loaded.pop(lm.model.name, None)
        else:
            lm.expires_at = math.inf if keep_alive < 0 else time.time() + keep_alive
        self._slot(lm.model.name).release()

    def text_tokens(self, model: SimModel, seed_text: str, options: dict[str, Any], text: str = "") -> list[str]:
        """The answer's tokens. Deterministic requests (temperature 0 or a seed) are generated
        like a language model at temperature 0: each token follows from the whole context so
        far (`seed_text` is the fixed part, `text` the text the answer continues), so asking
        again with the generated text appended continues the same answer token for token."""
        deterministic = options.get("temperature") == 0 or "seed" in options
        n = options.get("num_predict", self.default_tokens)
        if not isinstance(n, int) or n < 0:
            n = self.default_tokens
        if deterministic:
            state = hashlib.sha256(f"{model.name}\x00{seed_text}\x00{options.get('seed')}\x00{text}".encode())
            tokens = []
            for _ in range(n):
                word = VOCAB[int.from_bytes(state.copy().digest()[:8], "big") % len(VOCAB)]
                token = (" " if text and not text[-1].isspace() and text[-1] not in "([{" else "") + word
                tokens.append(token)
                text += token
                state.update(token.encode())
        else:
            rng = random.Random()
            tokens = [(" " if i else "") + rng.choice(VOCAB) for i in range(n)]
        stops = options.get("stop") or []
        if isinstance(stops, str):
            stops = [stops]
        text = ""
        out = []
        for t in tokens:
            if any(s and s in text + t for s in stops):
                break
            text += t
            out.append(t)
        return out

    def embedding(self, model: SimModel, text: str, dims: int | None = None) -> list[float]:
        dim = dims or model.dim
        seed = hashlib.sha256(f"{model.name}\x00{text}".encode()).digest()
        rng = random.Random(seed)
        vec = [rng.uniform(-1, 1) for _ in range(dim)]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [round(v / norm, 6) for v in vec]


INFERENCE_PATHS = {
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
}


class ApiJSON(JSONResponse):
    media_type = JSON_API


class V1JSON(JSONResponse):
    media_type = JSON_V1


def _err(status: int, message: str) -> JSONResponse:
    return ApiJSON({"error": message}, status_code=status)


def _oai_err(status: int, message: str, typ: str | None = None) -> JSONResponse:
    # openai.NewError: the type follows the status
    typ = typ or {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return V1JSON({"error": {"message": message, "type": typ, "param": None, "code": None}}, status_code=status)


def _decode(path: str, body: dict[str, Any]) -> None:
    """Ollama's request decoding and the checks it makes before looking at the model."""
    fields, struct = STRUCTS[path]
    try:
        binding.bind(body, fields, struct)
    except binding.BindError as exc:
        raise OllamaError(400, str(exc)) from None
    if path == "/v1/chat/completions" and not body.get("messages"):
        raise OllamaError(400, "[] is too short - 'messages'")
    if path == "/v1/embeddings":
        fmt = body.get("encoding_format")
        if fmt and fmt.lower() not in ("float", "base64"):
            raise OllamaError(
                400, f"Invalid value for 'encoding_format' = {fmt}. Supported values: ['float', 'base64']."
            )
        if body.get("input") is None or body.get("input") == []:
            raise OllamaError(400, "invalid input")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        status = MODEL_REQUIRED_STATUS[NATIVE_OF.get(path, path)]
        raise OllamaError(status, "model is required" if status == 400 else "model '' not found")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise OllamaError(400, "EOF")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OllamaError(400, f"invalid character looking for beginning of value: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        # Go's decoder: a number too big for its field, or nesting past its depth limit
        raise OllamaError(400, f"json: cannot unmarshal: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise OllamaError(400, "json: cannot unmarshal array into Go value of type api.GenerateRequest")
    return data


def _details(m: SimModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": m.family,
        "families": [m.family],
        "parameter_size": m.parameter_size,
        "quantization_level": "Q4_K_M" if not m.embedding else "F16",
    }


def _durations(
    load: float, prompt_n: int, eval_n: int, started: float, prompt_s: float, eval_s: float
) -> dict[str, int]:
    return {
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": int(load * 1e9),
        "prompt_eval_count": prompt_n,
        "prompt_eval_duration": int(prompt_s * 1e9),
        "eval_count": eval_n,
        "eval_duration": int(eval_s * 1e9),
    }


def build_app(sim: SimOllama) -> Starlette:
    async def root(request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(request: Request) -> Response:
        return ApiJSON({"version": VERSION})

    async def tags(request: Request) -> Response:
        return ApiJSON(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": "2025-01-01T00:00:00Z",
                        "size": m.size,
                        "digest": m.digest,
                        "details": _details(m),
                    }
                    for m in sim.models.values()
                ]
            }
        )

    async def ps(request: Request) -> Response:
        sim._expire()
        models = []
        for lm in sim.loaded.values():
            exp = (
                "2318-01-01T00:00:00Z"
                if lm.expires_at == math.inf
                else datetime.fromtimestamp(lm.expires_at, timezone.utc).isoformat().replace("+00:00", "Z")
            )
            models.append(
                {
                    "name": lm.model.name,
                    "model": lm.model.name,
                    "size": lm.model.size,
                    "digest": lm.model.digest,
                    "details": _details(lm.model),
                    "expires_at": exp,
                    "size_vram": 0,
                    "context_length": lm.runner[0] or DEFAULT_NUM_CTX,
                }
            )
        return ApiJSON({"models": models})

    async def show(request: Request) -> Response:
        try:
            body = await _body(request)
            m = sim.resolve(body.get("model") or body.get("name"))
        except OllamaError as e:
            return _err(e.status, e.message)
        return ApiJSON(
            {
                "license": "Apache License 2.0",
                "modelfile": f"FROM {m.name}\n",
                "parameters": 'stop "<|endoftext|>"',
                "template": "{{ .Prompt }}",
                "details": _details(m),
                "model_info": {
                    "general.architecture": m.family,
                    "general.parameter_count": 1_500_000_000,
                    f"{m.family}.context_length": MODEL_CONTEXT_LENGTH,  # the model's trained context
                },
                "capabilities": ["embedding"] if m.embedding else ["completion", "insert", "tools"],
                "modified_at": "2025-01-01T00:00:00Z",
            }
        )

    async def watch_disconnect(request: Request) -> None:
        while True:
            msg = await request.receive()
            if msg["type"] == "http.disconnect":
                return

    async def run_or_cancel(request: Request, coro: Any, entry: LogEntry) -> Any:
        """Run a non-streaming inference; stop it when the client goes away, like Ollama."""
        task = asyncio.ensure_future(coro)
        watcher = asyncio.ensure_future(watch_disconnect(request))
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            watcher.cancel()
            return task.result()
        task.cancel()
        entry.cancelled = True
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        return None

    async def generation(request: Request, path: str, kind: str) -> Response:
        started = time.perf_counter()
        entry = LogEntry(path=path, model="", body={}, started=time.time(), headers=dict(request.headers))
        sim.log.append(entry)
        oai = path.startswith("/v1/")
        try:
            body = await _body(request)
            entry.body = body
            _decode(path, body)
            model = sim.resolve(body.get("model"))
            entry.model = model.name
            if sim.fail_next:
                status, message = sim.fail_next.pop(0)
                raise OllamaError(status, message)
            if model.embedding:
                raise OllamaError(400, f'"{model.name}" does not support {"chat" if kind == "chat" else "generate"}')
            # the OpenAI middleware builds the native request afresh: no options, no keep_alive
            options = {} if oai else dict(body.get("options") or {})
            if oai:
                for src, dst in (
                    ("temperature", "temperature"),
                    ("seed", "seed"),
                    ("max_tokens", "num_predict"),
                    ("top_p", "top_p"),
                    ("stop", "stop"),
                ):
                    if body.get(src) is not None:
                        options[dst] = body[src]
            keep_alive = parse_keep_alive(None if oai else body.get("keep_alive"))
            stream = body.get("stream", not oai)
            if kind == "chat":
                messages = body.get("messages") or []
                if not isinstance(messages, list):
                    raise OllamaError(400, "messages must be a list")
                # Like Ollama's templates, a trailing assistant message is the answer so far:
                # the model continues it.
                so_far = ""
                if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
                    so_far = str(messages[-1].get("content") or "")
                    seed_text = json.dumps(messages[:-1], sort_keys=True)
                else:
                    seed_text = json.dumps(messages, sort_keys=True)
                prompt_n = sum(len(str(m.get("content", ""))) // 4 + 1 for m in messages if isinstance(m, dict))
                empty = not messages
            else:
                prompt = body.get("prompt", "")
                if not isinstance(prompt, str):
                    raise OllamaError(400, "prompt must be a string")
                seed_text = f"{body.get('system', '')}\x00{body.get('suffix', '')}"
                so_far = prompt
                prompt_n = len(prompt) // 4 + 1
                empty = prompt == ""  # /v1/completions without a prompt too: a load
        except OllamaError as e:
            entry.status = e.status
            entry.finished = time.time()
            return _oai_err(e.status, e.message) if oai else _err(e.status, e.message)
        except ValueError as e:
            entry.status = 400
            entry.finished = time.time()
            return _oai_err(400, str(e)) if oai else _err(400, str(e))

        try:
            # Like Ollama, a request whose client went away while it waited for the
            # runner is dropped instead of run.
            lm = await run_or_cancel(request, sim._acquire(model, options, keep_alive, entry), entry)
        except OllamaError as e:
            entry.status = e.status
            entry.finished = time.time()
            return _oai_err(e.status, e.message, "server_error") if oai else _err(e.status, e.message)
        if lm is None:
            entry.finished = time.time()
            entry.status = 499
            return Response(status_code=499)
        load_s = time.perf_counter() - started if entry.loaded else 0.0

        if empty:
            # An empty prompt / no messages loads (or, with keep_alive 0, unloads) the model.
            sim._release(lm, keep_alive)
            entry.finished = time.time()
            reason = "unload" if keep_alive == 0 else "load"
            if oai:  # the CompleteWriter turns the load answer into an empty completion
                empty_choice = {"text": "", "index": 0, "finish_reason": reason}
                return V1JSON(
                    {
                        "id": f"cmpl-{random.randint(0, 999)}",
                        "object": "text_completion",
                        "created": int(time.time()),
                        "model": model.name,
                        "system_fingerprint": "fp_ollama",
                        "choices": [empty_choice],
                        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    }
                )
            out: dict[str, Any] = {"model": model.name, "created_at": now_iso(), "done": True, "done_reason": reason}
            if kind == "chat":
                out["message"] = {"role": "assistant", "content": ""}
            else:
                out["response"] = ""
            return ApiJSON(out)

        tokens = sim.text_tokens(model, seed_text, options, so_far)
        facts = list(dict.fromkeys(FACT_MARKER.findall((seed_text + so_far).replace("\\n", " "))))
        if facts:
            tokens = [f"facts: {' '.join(facts)};", *tokens]
        if body.get("format") == "json" or isinstance(body.get("format"), dict):
            tokens = [json.dumps({"answer": "".join(tokens)})]
        done_reason = "length" if "num_predict" in options and len(tokens) >= options["num_predict"] else "stop"

        async def produce() -> AsyncIterator[str]:
            """Yield tokens with Ollama-like timing, holding the model slot throughout."""
            prompt_done = time.monotonic() + sim.prompt_delay_s
            try:
                if sim.prompt_delay_s:
                    await asyncio.sleep(sim.prompt_delay_s)
                for t in tokens:
                    if sim.token_delay_s:
                        await asyncio.sleep(sim.token_delay_s)
                    entry.tokens += 1
                    yield t
            except (asyncio.CancelledError, GeneratorExit):
                entry.cancelled = True
                raise
            finally:
                left = prompt_done - time.monotonic()
                if left > 0:
                    # Like Ollama's runner, a prompt batch being evaluated is not interrupted:
                    # the slot stays busy until it is done, whenever the client left.
                    def release_later() -> None:
                        sim._release(lm, keep_alive)
                        entry.finished = time.time()

                    asyncio.get_running_loop().call_later(left, release_later)
                else:
                    sim._release(lm, keep_alive)
                    entry.finished = time.time()

        prompt_s = sim.prompt_delay_s
        eval_s = sim.token_delay_s * len(tokens)

        def final_fields() -> dict[str, Any]:
            f: dict[str, Any] = {"done": True, "done_reason": done_reason}
            if kind == "generate" and not body.get("raw"):
                f["context"] = [abs(hash(t)) % 50000 for t in tokens[:8]]
            f.update(_durations(load_s, prompt_n, len(tokens), started, prompt_s, eval_s))
            return f

        created = int(time.time())
        oid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{random.randint(0, 999)}"

        if oai:
            obj = "chat.completion" if kind == "chat" else "text_completion"
            usage = {
                "prompt_tokens": prompt_n,
                "completion_tokens": len(tokens),
                "total_tokens": prompt_n + len(tokens),
            }
            finish = "length" if done_reason == "length" else "stop"
            if stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                chunk_obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

                def event(choices: list[dict[str, Any]], usage_field: dict[str, int] | None) -> bytes:
                    # openai.ChatCompletionChunk / CompletionChunk: usage only when asked for
                    chunk: dict[str, Any] = {
                        "id": oid,
                        "object": chunk_obj,
                        "created": created if kind == "chat" else int(time.time()),
                        "model": model.name,
                        "system_fingerprint": "fp_ollama",
                        "choices": choices,
                    }
                    if usage_field is not None:
                        chunk["usage"] = usage_field
                    return f"data: {json.dumps(chunk)}\n\n".encode()

                zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

                async def sse() -> AsyncIterator[bytes]:
                    first = True
                    async for t in produce():
                        if kind == "chat":
                            # the role only in the first delta (Delta.Role is omitempty)
                            delta: dict[str, Any] = {"role": "assistant", "content": t} if first else {"content": t}
                            yield event([{"index": 0, "delta": delta, "finish_reason": None}], None)
                        else:
                            # the CompleteWriter puts a zero usage on every chunk when asked for usage
                            text_choice = {"text": t, "index": 0, "finish_reason": None}
                            yield event([text_choice], zero if include_usage else None)
                        first = False
                    if kind == "chat":
                        yield event([{"index": 0, "delta": {}, "finish_reason": finish}], None)
                    else:
                        last_choice = {"text": "", "index": 0, "finish_reason": done_reason}
                        yield event([last_choice], zero if include_usage else None)
                    if include_usage:  # then one usage-only chunk
                        yield event([], usage)
                    yield b"data: [DONE]\n\n"

                return StreamingResponse(sse(), media_type="text/event-stream")

            async def collect() -> list[str]:
                return [t async for t in produce()]

            got = await run_or_cancel(request, collect(), entry)
            if got is None:
                return Response(status_code=499)
            text = "".join(got)
            if kind == "chat":
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            else:
                choice = {"text": text, "index": 0, "finish_reason": finish}
            return V1JSON(
                {
                    "id": oid,
                    "object": obj,
                    "created": created,
                    "model": model.name,
                    "system_fingerprint": "fp_ollama",
                    "choices": [choice],
                    "usage": usage,
                }
            )

        if stream:

            async def ndjson() -> AsyncIterator[bytes]:
                async for t in produce():
                    chunk: dict[str, Any] = {"model": model.name, "created_at": now_iso()}
                    if kind == "chat":
                        chunk["message"] = {"role": "assistant", "content": t}
                    else:
                        chunk["response"] = t
                    chunk["done"] = False
                    yield (json.dumps(chunk) + "\n").encode()
                last: dict[str, Any] = {"model": model.name, "created_at": now_iso()}
                if kind == "chat":
                    last["message"] = {"role": "assistant", "content": ""}
                else:
                    last["response"] = ""
                last.update(final_fields())
                yield (json.dumps(last) + "\n").encode()

            return StreamingResponse(ndjson(), media_type=NDJSON)

        async def collect2() -> list[str]:
            return [t async for t in produce()]

        got = await run_or_cancel(request, collect2(), entry)
        if got is None:
            return Response(status_code=499)
        text = "".join(got)
        out = {"model": model.name, "created_at": now_iso()}
        if kind == "chat":
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out.update(final_fields())
        return ApiJSON(out)

    async def generate(request: Request) -> Response:
        return await generation(request, "/api/generate", "generate")

    async def chat(request: Request) -> Response:
        return await generation(request, "/api/chat", "chat")

    async def v1_chat(request: Request) -> Response:
        return await generation(request, "/v1/chat/completions", "chat")

    async def v1_completions(request: Request) -> Response:
        return await generation(request, "/v1/completions", "generate")

    async def embedding_call(request: Request, path: str) -> Response:
        started = time.perf_counter()
        entry = LogEntry(path=path, model="", body={}, started=time.time(), headers=dict(request.headers))
        sim.log.append(entry)
        oai = path.startswith("/v1/")
        try:
            body = await _body(request)
            entry.body = body
            _decode(path, body)
            if oai and body.get("input") == "":
                body = dict(body, input=[""])  # EmbeddingsMiddleware: "" becomes [""]
            model = sim.resolve(body.get("model"))
            entry.model = model.name
            if sim.fail_next:
                status, message = sim.fail_next.pop(0)
                raise OllamaError(status, message)
            if path == "/api/embeddings":
                prompt = body.get("prompt") or ""
                inputs = [prompt] if prompt else []
            else:
                raw = body.get("input")
                if isinstance(raw, str):
                    inputs = [raw] if raw else []  # EmbedHandler skips an empty string
                elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                    inputs = list(raw)
                elif raw is None:
                    inputs = []
                else:
                    raise OllamaError(400, "invalid input type")
            keep_alive = parse_keep_alive(None if oai else body.get("keep_alive"))
            dims = body.get("dimensions")
            lm = await sim._acquire(model, {} if oai else dict(body.get("options") or {}), keep_alive, entry)
        except OllamaError as e:
            entry.status = e.status
            entry.finished = time.time()
            return _oai_err(e.status, e.message) if oai else _err(e.status, e.message)
        except ValueError as e:  # keep_alive
            entry.status = 400
            entry.finished = time.time()
            return _oai_err(400, str(e)) if oai else _err(400, str(e))
        load_s = time.perf_counter() - started if entry.loaded else 0.0
        if not inputs and path == "/api/embed":
            sim._release(lm, keep_alive)
            entry.finished = time.time()
            return ApiJSON({"model": body.get("model"), "embeddings": []})  # after loading the model
        try:
            if sim.prompt_delay_s and inputs:
                # embedding cost grows with the batch: a token delay per input
                await asyncio.sleep(sim.prompt_delay_s + sim.token_delay_s * len(inputs) / 4)
            vectors = [sim.embedding(model, t, dims) for t in inputs]
        finally:
            sim._release(lm, keep_alive)
            entry.finished = time.time()
        n_tokens = sum(len(t) // 4 + 1 for t in inputs)
        if path == "/api/embeddings":
            return ApiJSON({"embedding": vectors[0] if vectors else []})
        if oai:
            b64 = str(body.get("encoding_format") or "").lower() == "base64"
            return V1JSON(
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "embedding": _b64(v) if b64 else v, "index": i}
                        for i, v in enumerate(vectors)
                    ],
                    "model": model.name,
                    "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
                }
            )
        return ApiJSON(
            {
                "model": model.name,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": int(load_s * 1e9),
                "prompt_eval_count": n_tokens,
            }
        )

    async def embed(request: Request) -> Response:
        return await embedding_call(request, "/api/embed")

    async def embeddings(request: Request) -> Response:
        return await embedding_call(request, "/api/embeddings")

    async def v1_embeddings(request: Request) -> Response:
        return await embedding_call(request, "/v1/embeddings")

    async def v1_model(request: Request) -> Response:
        # RetrieveMiddleware: /api/show for the id, answered as an OpenAI model
        name = request.path_params["model"]
        try:
            m = sim.resolve(name)
        except OllamaError as e:
            return _oai_err(e.status, e.message)
        del m
        return V1JSON({"id": name, "object": "model", "created": 1735689600, "owned_by": "library"})

    async def v1_models(request: Request) -> Response:
        return V1JSON(
            {
                "object": "list",
                "data": [
                    {"id": m.name, "object": "model", "created": 1735689600, "owned_by": "library"}
                    for m in sim.models.values()
                ],
            }
        )

    async def pull(request: Request) -> Response:
        try:
            body = await _body(request)
        except OllamaError as e:
            return _err(e.status, e.message)
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            return _err(400, "model is required")
        if name.startswith("missing"):
            return _err(500, "pull model manifest: file does not exist")
        full = name if ":" in name else f"{name}:latest"
        digest = hashlib.sha256(full.encode()).hexdigest()
        total = 4_000_000
        steps = [{"status": "pulling manifest"}]
        steps += [
            {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": total, "completed": c}
            for c in (0, total // 2, total)
        ]
        steps += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        sim.models.setdefault(full, SimModel(full))
        if body.get("stream") is False:
            return ApiJSON({"status": "success"})

        async def progress() -> AsyncIterator[bytes]:
            for s in steps:
                await asyncio.sleep(0.01)
                yield (json.dumps(s) + "\n").encode()

        return StreamingResponse(progress(), media_type=NDJSON)

    async def delete(request: Request) -> Response:
        try:
            body = await _body(request)
            m = sim.resolve(body.get("model") or body.get("name"))
        except OllamaError as e:
            return _err(e.status, e.message)
        del sim.models[m.name]
        return Response(status_code=200)

    async def copy(request: Request) -> Response:
        try:
            body = await _body(request)
            m = sim.resolve(body.get("source"))
        except OllamaError as e:
            return _err(e.status, e.message)
        dest = body.get("destination")
        if not isinstance(dest, str) or not dest:
            return _err(400, "destination is required")
        sim.models[dest] = SimModel(dest, m.family, m.parameter_size, m.size, m.embedding, m.dim)
        return Response(status_code=200)

    async def not_found(request: Request) -> Response:
        return PlainTextResponse("404 page not found", status_code=404)

    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET", "HEAD"]),
        Route("/api/tags", tags, methods=["GET", "HEAD"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
        Route("/api/pull", pull, methods=["POST"]),
        Route("/api/delete", delete, methods=["DELETE"]),
        Route("/api/copy", copy, methods=["POST"]),
        Route("/v1/chat/completions", v1_chat, methods=["POST"]),
        Route("/v1/completions", v1_completions, methods=["POST"]),
        Route("/v1/embeddings", v1_embeddings, methods=["POST"]),
        Route("/v1/models", v1_models, methods=["GET"]),
        Route("/v1/models/{model:path}", v1_model, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.add_exception_handler(404, lambda r, e: PlainTextResponse("404 page not found", status_code=404))  # type: ignore[arg-type]
    app.state.sim = sim
    return app
