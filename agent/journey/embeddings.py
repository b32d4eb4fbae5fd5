"""Embeddings cached per input text.

A batch of 100 inputs of which 97 are known sends only the 3 new ones to
Ollama and answers all 100 in order. Inputs another request is already
fetching are awaited, not fetched twice. All three embedding APIs go to
Ollama's /api/embed (the vectors /v1/embeddings returns are the same), so an
index built through one API is reused through the others; the legacy
/api/embeddings returns Ollama's unnormalised vectors and keeps its own entries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from agent.cache.base import Entry
from agent.cache.keys import RUNNER_ONLY_OPTIONS, embedding_key
from agent.errors import PowergateError, UpstreamError
from agent.gateway import proxy
from agent.gateway.responses import H_CACHE, H_PROFILE, H_UPSTREAM, error_response, json_media, powergate_headers
from agent.journey.request import InferenceRequest
from agent.profiles import Profile
from agent.upstreams.base import Reply, Upstream
from agent.upstreams.pool import Route, retryable

if TYPE_CHECKING:
    from agent.runtime import Runtime

EMBED_BATCH = 16  # inputs per upstream call: a re-index holds Ollama only briefly between suggestions
H_INPUTS = "X-Powergate-Cache-Inputs"  # "cached/total" inputs of an embedding request


def _retrieve(task: asyncio.Task[None]) -> None:
    # the starter may be gone: its error is answered to the followers, not left unread
    if not task.cancelled():
        task.exception()


class UpstreamFailed(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class EmbeddingService:
    def __init__(self, rt: Runtime, error: Callable[..., Response]) -> None:
        self.rt = rt
        self._error = error
        self._waiting: dict[str, int] = {}  # input key -> requests following its fetch (bounded by requests)

    async def handle(self, req: InferenceRequest) -> Response:
        path, body, profile, no_read, no_store = req.path, req.body, req.profile, req.no_read, req.no_store
        request = req.http
        model = body["model"]
        legacy = path == "/api/embeddings"
        if legacy:
            inputs = [body["prompt"]] if body.get("prompt") else []
        else:
            raw = body.get("input")
            if isinstance(raw, str):
                # Ollama's /api/embed drops an empty string (no inputs: "embeddings": []);
                # its /v1/embeddings turns "" into [""] before that (middleware/openai.go).
                inputs = [raw] if raw or req.openai else []
            else:
                inputs = list(raw or [])
        options = {k: v for k, v in (body.get("options") or {}).items() if k not in RUNNER_ONLY_OPTIONS}
        params = {
            "api": "legacy" if legacy else "embed",
            "truncate": body.get("truncate", True),
            "dimensions": body.get("dimensions"),
            "options": options,
        }
        headers = powergate_headers("miss", model, profile.name)
        if not inputs:
            # Nothing to embed: Ollama still checks (and loads) the model, then answers an empty
            # list. Asked as it is, so an unknown model is the same 404 as without powergate.
            return await self._relay_empty(req, model)

        keys = [embedding_key(model, t, params) for t in inputs]
        text_of = dict(zip(keys, inputs, strict=True))
        unique = list(dict.fromkeys(keys))
        use_cache = not self.rt.controller.cache_paused
        found: dict[str, tuple[Entry, str]] = {}
        if use_cache and not no_read:
            found = await self.rt.cache.lookup_many(unique)
        vectors: dict[str, bytes] = {k: e.chunks[0] for k, (e, _) in found.items()}
        # The tokens each input cost when it was embedded: a cached input reports them again,
        # as clients bill and log usage per request.
        tokens: dict[str, int] = {k: int(e.meta.get("tokens") or 0) for k, (e, _) in found.items()}
        missing = [k for k in unique if k not in vectors]
        pending = self.rt.embed_pending
        theirs = [k for k in missing if k in pending and not no_read]
        mine = [k for k in missing if k not in theirs]
        loop = asyncio.get_running_loop()
        futures = {k: loop.create_future() for k in mine}
        for k, f in futures.items():
            pending.setdefault(k, f)
        stats = {"total_duration": 0, "load_duration": 0, "prompt_eval_count": 0}
        # The upstream call belongs to every request waiting for its inputs, not to the
        # one that started it: if that client leaves, the call goes on for the others.
        fetch: asyncio.Task[None] | None = None
        served: list[str] = []  # the host(s) that answered
        if mine:
            texts = [text_of[k] for k in mine]
            store = use_cache and not no_store
            fetch = asyncio.ensure_future(
                self._fetch_shared(req, model, mine, texts, legacy, stats, futures, store, served)
            )
            fetch.add_done_callback(_retrieve)
        for k in theirs:
            self._waiting[k] = self._waiting.get(k, 0) + 1
        try:
            if fetch is not None:
                await proxy.until_done(request, asyncio.shield(fetch))
                if served:
                    headers[H_UPSTREAM] = served[-1]
                for k in mine:
                    vectors[k], tokens[k] = futures[k].result()
            if theirs:
                # shielded: a follower that leaves must not cancel the others' inputs
                shared = await proxy.until_done(request, asyncio.gather(*(asyncio.shield(pending[k]) for k in theirs)))
                for k, (vec, n) in zip(theirs, shared, strict=True):
                    vectors[k] = vec
                    tokens[k] = n
        except UpstreamFailed as exc:
            self._fail(futures)
            return exc.response
        except UpstreamError as exc:
            self._fail(futures)
            return self._error(path, exc, model, profile.name)
        except proxy.ClientGone:
            if fetch is not None and not fetch.done() and not any(self._waiting.get(k) for k in mine):
                fetch.cancel()  # nobody else waits for these inputs: stop the upstream work
            return Response(status_code=499)
        except PowergateError as exc:
            self._fail(futures)
            return error_response(path, str(exc), 502, headers=headers)
        finally:
            for k in theirs:
                left = self._waiting.get(k, 1) - 1
                if left > 0:
                    self._waiting[k] = left
                else:
                    self._waiting.pop(k, None)

        cached = len(keys) - sum(1 for k in keys if k in futures)
        if missing and mine:
            outcome = "miss"
        elif theirs:
            outcome = "coalesced"
        else:
            tiers = {found[k][1] for k in unique}
            outcome = next((t for t in ("hit-redis", "hit-disk", "hit-memory") if t in tiers), "hit-memory")
        if not use_cache:
            outcome = "bypass"
        headers[H_CACHE] = outcome
        headers[H_INPUTS] = f"{cached}/{len(keys)}"
        ordered = [vectors[k] for k in keys]
        stats["prompt_eval_count"] = sum(tokens[k] for k in keys)
        return Response(self._render(path, model, ordered, body, stats), media_type=json_media(path), headers=headers)

    async def _fetch_shared(
        self,
        req: InferenceRequest,
        model: str,
        keys: list[str],
        texts: list[str],
        legacy: bool,
        stats: dict[str, int],
        futures: dict[str, asyncio.Future[Any]],
        store: bool,
        served: list[str],
    ) -> None:
        """Fetch the inputs, hand each vector to everyone waiting for it, store them."""
        pending = self.rt.embed_pending
        try:
            got = await self._fetch(req, model, texts, legacy, stats, served)
            for k, (vec, n) in zip(keys, got, strict=True):
                futures[k].set_result((vec, n))
            if store:
                self.rt.cache.store_many(
                    [
                        (k, Entry("embedding", model, [vec], meta={"tokens": n}))
                        for k, (vec, n) in zip(keys, got, strict=True)
                    ]
                )
        except BaseException:
            self._fail(futures)
            raise
        finally:
            for k, f in futures.items():
                if pending.get(k) is f:
                    del pending[k]

    @staticmethod
    def _fail(futures: dict[str, asyncio.Future[Any]]) -> None:
        for f in futures.values():
            if not f.done():
                f.set_exception(PowergateError("the upstream call that was fetching this input failed"))
                f.exception()  # retrieved: followers see it through gather, nobody else must warn

    async def _call(
        self, route: Route, served: list[str], priority: int, path: str, body: dict[str, Any], fwd: dict[str, str]
    ) -> Reply:
        """One embedding call on the route's current host; once on the next host if it failed
        before answering (the client has seen nothing yet)."""
        up: Upstream | None = route.host(served[-1]) if served else route.first
        while up is not None:
            resp: Reply | None = None
            error: UpstreamError | None = None
            try:
                async with up.scheduler.slot(priority):
                    route.attempt(up)
                    resp = await up.infer(path, body, fwd, stream=False)
            except UpstreamError as exc:
                error = exc
            status = resp.status_code if resp is not None else None
            if not retryable(error, status):
                if error is not None:
                    raise error
                assert resp is not None
                route.answered(up)
                served.append(up.url)
                return resp
            route.failed(up, error, status)
            nxt = route.next_after(up)
            if nxt is None:
                if error is not None:
                    raise error
                assert resp is not None
                served.append(up.url)
                return resp
            up = nxt
        raise UpstreamError("no model host could answer")

    async def _fetch(
        self,
        req: InferenceRequest,
        model: str,
        texts: list[str],
        legacy: bool,
        stats: dict[str, int],
        served: list[str],
    ) -> list[tuple[bytes, int]]:
        """The vector and the prompt tokens of each text, in order."""
        path, body, profile = req.path, req.body, req.profile
        route = self.rt.upstreams.route(model)
        fwd = dict(req.forward, **{"content-type": "application/json"})
        out: list[tuple[bytes, int]] = []
        if legacy:
            up = {k: v for k, v in body.items() if k != "stream"}
            resp = await self._call(route, served, req.priority, "/api/embeddings", up, fwd)
            self._check(path, resp.status_code, resp.content, model, profile)
            return [(json.dumps(json.loads(resp.content)["embedding"], separators=(",", ":")).encode(), 0)]
        base: dict[str, Any] = {"model": model, "keep_alive": body.get("keep_alive", profile.keep_alive)}
        for k in ("truncate", "dimensions", "options"):
            if body.get(k) is not None:
                base[k] = body[k]
        for i in range(0, len(texts), EMBED_BATCH):
            batch = texts[i : i + EMBED_BATCH]
            # One slot per batch: a suggestion waiting behind a re-index gets in between batches.
            resp = await self._call(route, served, req.priority, "/api/embed", dict(base, input=batch), fwd)
            self._check(path, resp.status_code, resp.content, model, profile)
            doc = json.loads(resp.content)
            embs = doc.get("embeddings") or []
            if len(embs) != len(batch):
                raise PowergateError(f"Ollama returned {len(embs)} embeddings for {len(batch)} inputs")
            counts = split_tokens(int(doc.get("prompt_eval_count") or 0), batch)
            out.extend((json.dumps(v, separators=(",", ":")).encode(), n) for v, n in zip(embs, counts, strict=True))
            for k in stats:
                stats[k] += int(doc.get(k) or 0)
        return out

    async def _relay_empty(self, req: InferenceRequest, model: str) -> Response:
        """An embedding request with nothing to embed, asked upstream as it is and answered as is."""
        path, body, profile = req.path, req.body, req.profile
        upstream = self.rt.upstreams.pick()
        fwd = dict(req.forward, **{"content-type": "application/json"})
        up_path = "/api/embeddings" if path == "/api/embeddings" else "/api/embed"
        up = {k: v for k, v in body.items() if k not in ("stream", "encoding_format")}
        if up_path == "/api/embed":
            up["input"] = []
        headers = powergate_headers("bypass", model, profile.name)
        try:
            async with upstream.scheduler.slot(req.priority):
                resp = await proxy.until_done(req.http, upstream.infer(up_path, up, fwd, stream=False))
        except UpstreamError as exc:
            return self._error(path, exc, model, profile.name)
        except proxy.ClientGone:
            return Response(status_code=499)
        if resp.status_code != 200:
            return proxy.upstream_error(path, resp.status_code, resp.content, headers)
        content = resp.content if path == "/api/embed" else b'{"embedding":[]}'
        return Response(content, media_type=json_media(path), headers=headers)

    def _check(self, path: str, status: int, content: bytes, model: str, profile: Profile) -> None:
        if status != 200:
            headers = powergate_headers("bypass", model, profile.name)
            raise UpstreamFailed(proxy.upstream_error(path, status, content, headers))

    @staticmethod
    def _render(path: str, model: str, vectors: list[bytes], body: dict[str, Any], stats: dict[str, int]) -> bytes:
        m = json.dumps(model)
        if path == "/api/embeddings":
            return b'{"embedding":' + vectors[0] + b"}"
        if path == "/api/embed":
            tail = json.dumps(stats, separators=(",", ":"))[1:]
            return b'{"model":' + m.encode() + b',"embeddings":[' + b",".join(vectors) + b"]," + tail.encode()
        # /v1/embeddings
        b64 = str(body.get("encoding_format") or "").lower() == "base64"
        data = []
        for i, v in enumerate(vectors):
            if b64:
                floats = json.loads(v)
                emb = json.dumps(base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()).encode()
            else:
                emb = v
            data.append(b'{"object":"embedding","embedding":' + emb + b',"index":' + str(i).encode() + b"}")
        n = stats["prompt_eval_count"]
        usage = json.dumps({"prompt_tokens": n, "total_tokens": n}).encode()
        return b'{"object":"list","data":[' + b",".join(data) + b'],"model":' + m.encode() + b',"usage":' + usage + b"}"


def split_tokens(total: int, texts: list[str]) -> list[int]:
    """Share a batch's prompt_eval_count among its inputs, by length (largest remainder).

    Ollama reports one count per batch. Shared this way the counts of a batch add up to
    exactly what Ollama reported, and a single input keeps its exact count."""
    if not texts:
        return []
    weights = [len(t) + 1 for t in texts]  # +1: every input costs at least its special tokens
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(texts)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


__all__ = ["EmbeddingService", "H_INPUTS", "H_PROFILE", "split_tokens"]
