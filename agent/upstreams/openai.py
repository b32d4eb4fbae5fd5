"""OpenAI-compatible servers (LM Studio, vLLM, llama-cpp-python, ...): Ollama's API translated.

Requests on /v1 paths pass through with the model name checked; requests on
Ollama's paths are translated (translate.py) and their answers come back in
Ollama's shape, streams included. FIM (`suffix`) uses the model family's
template from agent/fim.py, since such servers take no `suffix` (vLLM refuses
it, llama-cpp-python ignores its FIM tokens); a model of no known family gets
Ollama's 400 "... does not support insert". `/api/tags`, `/api/show` and
`/api/ps` are synthesised from `/v1/models` (LM Studio: `/api/v0/models`, which
also says what is loaded); `/api/version` answers powergate's own version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from agent import __version__
from agent.cache.answers import assemble
from agent.fim import template_for
from agent.gateway.responses import error_body
from agent.upstreams import translate as tr
from agent.upstreams.base import HEALTH_TIMEOUT, Reply, Upstream, UpstreamHealth, dumps

log = logging.getLogger(__name__)

MODEL_LIST_TTL = 30.0  # seconds a model list is trusted
MODEL_LIST_RETRY = 1.0  # seconds: an unknown name refreshes the list at most this often
WARM_MAX_TOKENS = 1  # a warm-up asks for one token: enough to load the model, no more
SYNTHESISED = ("/api/tags", "/api/ps", "/api/show", "/api/version")
JSON = "application/json"


class Refusal(Exception):
    """An answer powergate gives for the upstream, in the caller's dialect (status + message)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class ModelInfo:
    id: str
    size: int = 0
    params: int = 0
    quantization: str = ""
    family: str = ""
    context: int = 0
    loaded: bool | None = None  # None: the server does not say (it serves what it lists)
    embedding: bool = False


class TranslatedReply:
    """A Reply built by powergate: a whole body, or a translated stream over an upstream response."""

    def __init__(
        self,
        status_code: int,
        content: bytes = b"",
        stream: AsyncIterator[bytes] | None = None,
        upstream: httpx.Response | None = None,
        media_type: str = JSON,
    ) -> None:
        self.status_code = status_code
        self._content = content
        self._stream = stream
        self._upstream = upstream
        self.headers = httpx.Headers({"content-type": media_type})

    @property
    def content(self) -> bytes:
        return self._content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self._stream is None:
            if self._content:
                yield self._content
            return
        async for chunk in self._stream:
            yield chunk

    async def aread(self) -> bytes:
        if self._stream is not None:
            self._content = b"".join([c async for c in self._stream])
            self._stream = None
        return self._content

    async def aclose(self) -> None:
        # Closing the upstream response closes its connection: the server stops generating.
        if self._upstream is not None:
            await self._upstream.aclose()


def refusal_reply(path: str, status: int, message: str) -> TranslatedReply:
    """An error in the caller's API format (Ollama's {"error": "..."} or OpenAI's object)."""
    return TranslatedReply(status, error_body(path, message, status))


def not_found(name: str) -> Refusal:
    return Refusal(404, f'model "{name}" not found, try pulling it first')  # Ollama's words


class OpenAIUpstream(Upstream):
    kind = "openai"
    label = "the OpenAI-compatible server"
    start_hint = "Start it (LM Studio's server, vLLM, ...) or point powergate at it with --upstream."
    max_tokens_key = "max_tokens"

    def __init__(self, settings: Any, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, transport)
        self._models: dict[str, ModelInfo] = {}
        self._models_at = 0.0
        self.lmstudio: bool | None = None  # /api/v0/models answers (LM Studio's richer list); None: not asked yet

    # ------------------------------------------------------------ models
    async def models(self, refresh: bool = False) -> dict[str, ModelInfo]:
        age = time.monotonic() - self._models_at
        if refresh and age > MODEL_LIST_RETRY or age > MODEL_LIST_TTL or not self._models:
            self._models = await self._fetch_models()
            self._models_at = time.monotonic()
        return self._models

    async def _fetch_models(self) -> dict[str, ModelInfo]:
        r = await self.send("GET", "/api/v0/models", timeout=HEALTH_TIMEOUT) if self.lmstudio is not False else None
        self.lmstudio = r is not None and r.status_code == 200
        if r is not None and r.status_code == 200:
            try:
                data = r.json().get("data") or []
                self.lmstudio = True
                return {
                    str(m["id"]): ModelInfo(
                        id=str(m["id"]),
                        quantization=str(m.get("quantization") or ""),
                        family=str(m.get("arch") or ""),
                        context=int(m.get("max_context_length") or 0),
                        loaded=m.get("state") == "loaded",
                        embedding=m.get("type") == "embeddings",
                    )
                    for m in data
                    if isinstance(m, dict) and m.get("id")
                }
            except (ValueError, AttributeError, TypeError):
                pass
        r = await self.send("GET", "/v1/models", timeout=HEALTH_TIMEOUT)
        if r.status_code != 200:
            return {}
        try:
            data = r.json().get("data") or []
        except (ValueError, AttributeError):
            return {}
        out = {}
        for m in data:
            if not isinstance(m, dict) or not m.get("id"):
                continue
            meta: dict[str, Any] = m["meta"] if isinstance(m.get("meta"), dict) else {}
            out[str(m["id"])] = ModelInfo(
                id=str(m["id"]),
                size=int(meta.get("size") or 0),
                params=int(meta.get("n_params") or 0),
                context=int(meta.get("n_ctx_train") or 0),
            )
        return out

    @staticmethod
    def _matches(name: str, model_id: str) -> bool:
        n = name.removesuffix(":latest").lower()
        mid = model_id.lower()
        base = mid.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".gguf")
        return n in (mid, mid.removesuffix(":latest"), base)

    async def resolve(self, name: str) -> ModelInfo:
        """The upstream's model for a client's name; Ollama's 404 for one it does not serve."""
        for refresh in (False, True):
            models = await self.models(refresh=refresh)
            for m in models.values():
                if self._matches(name, m.id):
                    return m
        raise not_found(name)

    # ------------------------------------------------------------ inference
    async def infer(self, path: str, body: dict[str, Any], headers: dict[str, str], *, stream: bool) -> Reply:
        headers = dict(headers, **{"content-type": JSON})
        try:
            name = str(body.get("model") or "")
            model = await self.resolve(name)
            if path.startswith("/v1/"):
                return await self._v1(path, body, model, headers, stream)
            if path in ("/api/embed", "/api/embeddings"):
                return await self._embed(path, body, model, headers)
            if path == "/api/chat":
                return await self._chat(body, name, model, headers, stream)
            return await self._generate(body, name, model, headers, stream)
        except Refusal as r:
            return refusal_reply(path, r.status, r.message)

    async def _v1(
        self, path: str, body: dict[str, Any], model: ModelInfo, headers: dict[str, str], stream: bool
    ) -> Reply:
        up = dict(body, model=model.id)
        if path == "/v1/completions" and up.get("suffix") is not None:
            up["prompt"] = self.fim_prompt(str(up.get("prompt") or ""), str(up.pop("suffix")), model.id, model.id)
        return await self.send("POST", path, content=dumps(up), headers=headers, stream=stream)

    def fim_prompt(self, prefix: str, suffix: str, model: str, name: str) -> str:
        template = template_for(model) or template_for(name)
        if template is None:
            raise Refusal(400, f'"{name}" does not support insert')  # what Ollama answers
        return template.render(prefix, suffix)

    async def _generate(
        self, body: dict[str, Any], name: str, model: ModelInfo, headers: dict[str, str], stream: bool
    ) -> Reply:
        prompt = str(body.get("prompt") or "")
        if not prompt and body.get("suffix") is None:
            # Ollama loads the model and answers done_reason "load" to an empty prompt
            doc = {"model": name, "created_at": tr.now_iso(), "response": "", "done": True, "done_reason": "load"}
            return TranslatedReply(200, json.dumps(doc).encode())
        if body.get("suffix") is not None:
            return await self._insert(body, name, model, headers, stream)
        req = tr.completion_request(body, model.id, prompt, bool(body.get("stream", True)))
        return await self._translated("/v1/completions", req, "generate", name, headers, stream)

    async def _insert(
        self, body: dict[str, Any], name: str, model: ModelInfo, headers: dict[str, str], stream: bool
    ) -> Reply:
        prompt = self.fim_prompt(str(body.get("prompt") or ""), str(body.get("suffix") or ""), model.id, name)
        req = tr.completion_request(body, model.id, prompt, bool(body.get("stream", True)))
        return await self._translated("/v1/completions", req, "generate", name, headers, stream)

    async def _chat(
        self, body: dict[str, Any], name: str, model: ModelInfo, headers: dict[str, str], stream: bool
    ) -> Reply:
        req = tr.chat_request(body, model.id, bool(body.get("stream", True)))
        self.chat_extras(body, req)
        return await self._translated("/v1/chat/completions", req, "chat", name, headers, stream)

    def chat_extras(self, body: dict[str, Any], req: dict[str, Any]) -> None:
        """Kind-specific chat fields (`think` where the server understands it)."""

    async def _translated(
        self,
        path: str,
        req: dict[str, Any],
        api: str,
        name: str,
        headers: dict[str, str],
        stream: bool,
        native: bool = False,
    ) -> Reply:
        """Send a translated request; answer in Ollama's shape (whole or NDJSON stream).

        The upstream is always asked to stream, even for a whole answer: servers notice a
        closed connection between streamed tokens (llama-cpp-python only then), so an abort
        or a cancelled prefetch stops the generation instead of letting it run to the end."""
        req = dict(req, stream=True)
        if not native:
            req["stream_options"] = {"include_usage": True}
        tally = tr.Tally()
        resp = await self.send("POST", path, content=dumps(req), headers=headers, stream=True)
        if resp.status_code != 200:
            content = await resp.aread()
            await resp.aclose()
            return TranslatedReply(
                resp.status_code, tr.ollama_error(tr.error_message(content, resp.status_code, self.label))
            )
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            # a server that answers whole whatever it was asked
            content = await resp.aread()
            await resp.aclose()
            try:
                doc = json.loads(content)
            except ValueError:
                return TranslatedReply(502, tr.ollama_error(f"{self.label} sent an answer that is not JSON"))
            if native:
                doc = native_as_openai(doc)
            whole = tr.whole_answer(api, name, doc, tally)
            return TranslatedReply(200, whole + b"\n" if stream else whole)
        translator = tr.StreamTranslator(api, name, native=native)
        translator.tally = tally
        lines = translate_lines(resp, translator)
        if stream:
            return TranslatedReply(200, stream=lines, upstream=resp, media_type="application/x-ndjson")
        try:
            out = b"".join([chunk async for chunk in lines])
        finally:
            await resp.aclose()
        if translator.error:
            return TranslatedReply(502, tr.ollama_error(translator.error))
        if not translator.finished:
            return TranslatedReply(502, tr.ollama_error(f"{self.label} ended the answer before it was complete"))
        return TranslatedReply(200, assemble(api, out.splitlines()))

    # ------------------------------------------------------------ embeddings
    async def _embed(self, path: str, body: dict[str, Any], model: ModelInfo, headers: dict[str, str]) -> Reply:
        legacy = path == "/api/embeddings"
        inputs = [str(body.get("prompt") or "")] if legacy else body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        req: dict[str, Any] = {"model": model.id, "input": list(inputs or [])}
        if body.get("dimensions") is not None:
            req["dimensions"] = body["dimensions"]
        started = time.perf_counter()
        r = await self.send("POST", "/v1/embeddings", content=dumps(req), headers=headers)
        if r.status_code != 200:
            return TranslatedReply(
                r.status_code, tr.ollama_error(tr.error_message(r.content, r.status_code, self.label))
            )
        try:
            doc = r.json()
            rows = sorted(doc.get("data") or [], key=lambda d: int(d.get("index", 0)))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError, AttributeError):
            return TranslatedReply(502, tr.ollama_error(f"{self.label} sent embeddings powergate cannot read"))
        if legacy:
            return TranslatedReply(200, json.dumps({"embedding": vectors[0] if vectors else []}).encode())
        # Ollama's /api/embed answers L2-normalised vectors; servers differ, so normalise here.
        vectors = [_normalised(v) for v in vectors]
        usage = doc.get("usage") or {}
        out = {
            "model": body.get("model"),
            "embeddings": vectors,
            "total_duration": int((time.perf_counter() - started) * tr.NS_PER_S),
            "load_duration": 0,
            "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
        }
        return TranslatedReply(200, json.dumps(out).encode())

    # ------------------------------------------------------------ other paths
    async def passthrough(
        self,
        method: str,
        path: str,
        content: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        params: Any = None,
    ) -> Reply:
        if path.startswith("/v1/models"):
            return await self.send(method, path, content=content, headers=headers, params=params, stream=True)
        if path in SYNTHESISED:
            raw = b""
            if isinstance(content, bytes):
                raw = content
            elif content is not None:
                raw = b"".join([c async for c in content])
            try:
                return TranslatedReply(200, json.dumps(await self._synthesise(method, path, raw)).encode())
            except Refusal as r:
                return refusal_reply(path, r.status, r.message)
        message = f"{path} is an Ollama call that {self.label} at {self.url} does not offer (powergate upstream kind {self.kind})"
        return refusal_reply(path, 501, message)

    async def _synthesise(self, method: str, path: str, raw: bytes) -> dict[str, Any]:
        if path == "/api/version":
            return {"version": __version__, "powergate": __version__, "upstream": self.kind}
        if path == "/api/show":
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                raise Refusal(400, "invalid JSON body") from None
            name = str(req.get("model") or req.get("name") or "") if isinstance(req, dict) else ""
            if not name:
                raise Refusal(400, "model is required")
            m = await self.resolve(name)
            return {
                "license": "",
                "modelfile": "",
                "parameters": "",
                "template": "",
                "details": self._details(m),
                "model_info": {"general.architecture": m.family, "general.parameter_count": m.params}
                | ({f"{m.family or 'model'}.context_length": m.context} if m.context else {}),
                "capabilities": self._capabilities(m),
                "modified_at": tr.now_iso(),
            }
        models = await self.models(refresh=True)
        loaded = await self.loaded_models()
        rows = []
        for m in models.values():
            if path == "/api/ps" and m.id not in loaded:
                continue
            row = {
                "name": m.id,
                "model": m.id,
                "size": m.size,
                "digest": hashlib.sha256(m.id.encode()).hexdigest(),
                "details": self._details(m),
            }
            if path == "/api/ps":
                row |= {"expires_at": "0001-01-01T00:00:00Z", "size_vram": 0, "context_length": m.context}
            else:
                row["modified_at"] = tr.now_iso()
            rows.append(row)
        return {"models": rows}

    @staticmethod
    def _details(m: ModelInfo) -> dict[str, Any]:
        size = f"{m.params / 1e9:.1f}B" if m.params >= 1e9 else (f"{m.params / 1e6:.0f}M" if m.params else "")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": m.family,
            "families": [m.family] if m.family else None,
            "parameter_size": size,
            "quantization_level": m.quantization,
        }

    def _capabilities(self, m: ModelInfo) -> list[str]:
        if m.embedding:
            return ["embedding"]
        caps = ["completion"]
        if template_for(m.id) is not None:
            caps.append("insert")
        return caps

    # ------------------------------------------------------------ health and warm-up
    async def check(self) -> UpstreamHealth:
        """GET /v1/models with a short timeout, only while nothing runs through us: a server may
        cut its running generation for any other request (llama-cpp-python's default
        interrupt_requests), and a generation in progress says enough about its health."""
        if not self.scheduler.idle and self.health.reachable:
            return self.health
        try:
            r = await self.client.get("/v1/models", timeout=HEALTH_TIMEOUT)
            r.raise_for_status()
            self._mark(True)
        except httpx.ReadTimeout as exc:
            # Connected, but no answer in time: llama-cpp-python serves one request at a time,
            # so /v1/models waits behind a generation another client started. A server that
            # was reachable is busy, not down (a hung one shows when a request to it fails).
            if self.health.reachable:
                log.debug("upstream %s is busy: its model list did not answer in %.0f s", self.url, HEALTH_TIMEOUT)
            else:
                self._mark(False, self.unreachable_message(exc))
        except httpx.HTTPError as exc:
            self._mark(False, self.unreachable_message(exc))
        return self.health

    async def loaded_models(self) -> list[str]:
        try:
            models = await self.models()  # the cached list: asking again could cut a running generation
        except Exception:  # a health read must never fail its caller
            return []
        return [m.id for m in models.values() if m.loaded is not False]

    async def load(self, model: str, keep_alive: str, options: dict[str, Any]) -> bool:
        """No load call in the OpenAI API: a one-token completion loads the model (keep_alive is not understood)."""
        try:
            m = await self.resolve(model)
        except Refusal:
            return False
        req = {"model": m.id, "prompt": " ", self.max_tokens_key: WARM_MAX_TOKENS, "stream": False}
        r = await self.send("POST", self.warm_path, content=dumps(req), headers={"content-type": JSON})
        return r.status_code == 200

    warm_path = "/v1/completions"

    async def unload(self, model: str) -> bool:
        return False  # no unload call in the OpenAI API; the server manages its own memory

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.lmstudio:
            d["flavour"] = "lmstudio"
        return d


async def translate_lines(resp: httpx.Response, translator: tr.StreamTranslator) -> AsyncIterator[bytes]:
    """Upstream SSE lines in, Ollama NDJSON out, as they arrive."""
    buf = b""
    async for raw in resp.aiter_raw():
        buf += raw
        out = b""
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            ln, buf = buf[:nl], buf[nl + 1 :]
            out += translator.feed(ln)
        if out:
            yield out
    if buf.strip():
        out = translator.feed(buf)
        if out:
            yield out
    if not translator.finished and translator.tally.first_token is not None and translator.saw_finish:
        yield translator.finish()


def native_as_openai(doc: dict[str, Any]) -> dict[str, Any]:
    """A whole llama.cpp /infill or /completion answer as an OpenAI completion."""
    finish = "length" if doc.get("stop_type") == "limit" else "stop"
    return {
        "choices": [{"text": doc.get("content") or "", "index": 0, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": int(doc.get("tokens_evaluated") or 0),
            "completion_tokens": int(doc.get("tokens_predicted") or 0),
        },
        "timings": doc.get("timings") or {},
    }


def _normalised(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else v
