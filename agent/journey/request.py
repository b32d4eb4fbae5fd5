"""The one shape every inference request has once the edge has decoded it.

Ollama's and OpenAI's dialects both decode into an `InferenceRequest`; the
stages after the edge read this, never the HTTP request. The body stays in the
client's dialect on purpose: cache keys, stored answers and their replay are
per client API (an OpenAI stream is replayed as SSE, an Ollama one as NDJSON),
and each upstream backend translates from it to what its server speaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from agent.cache.keys import API_BY_PATH
from agent.gateway.validate import INFERENCE_KINDS
from agent.profiles import Profile
from agent.upstreams.scheduling import CHAT

EMBED_KINDS = ("embed", "embeddings")

# X-Powergate-Cache outcomes the journey sets (the cache tiers name their own hits)
BYPASS = "bypass"
MISS = "miss"
TYPEAHEAD = "typeahead"
COALESCED = "coalesced"


@dataclass
class InferenceRequest:
    http: Request  # the client's connection: to notice it leaving, and who is typing
    path: str  # the client's path, e.g. /api/generate or /v1/chat/completions
    body: dict[str, Any]  # validated, in the client's dialect; routing rewrites `model`
    requested: str  # the model name the client sent (may be an alias: auto, autocomplete...)
    profile: Profile  # fixed for this request until it is answered
    no_read: bool = False  # Cache-Control: no-cache
    no_store: bool = False  # Cache-Control: no-store
    forward: dict[str, str] = field(default_factory=dict)  # client headers worth passing on
    # set by the route stage
    model: str = ""
    job: str = ""
    priority: int = CHAT
    headers: dict[str, str] = field(default_factory=dict)  # powergate's answer headers

    @property
    def kind(self) -> str:
        """generate, chat, embed or embeddings (validate.INFERENCE_KINDS)."""
        return INFERENCE_KINDS[self.path]

    @property
    def api(self) -> str:
        """The stored-answer format (cache.keys.API_BY_PATH)."""
        return API_BY_PATH.get(self.path, "embedding")

    @property
    def openai(self) -> bool:
        return self.path.startswith("/v1/")

    @property
    def embedding(self) -> bool:
        return self.kind in EMBED_KINDS

    @property
    def stream(self) -> bool:
        """What the client asked: Ollama streams unless told not to, OpenAI the other way round."""
        stream = self.body.get("stream")
        return bool(stream) if stream is not None else not self.openai

    @property
    def include_usage(self) -> bool:
        if not self.openai:
            return True
        return bool((self.body.get("stream_options") or {}).get("include_usage"))
