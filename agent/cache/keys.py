"""Cache keys: everything that changes the answer, nothing that does not.

The key covers the API, the model that really serves the request (after
routing), the prompt or messages and every output-affecting field and option.
Runner options (threads, GPU layers, batch, keep_alive) never change the text
and are left out, so a profile switch does not empty the cache.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Options Ollama uses to place and run the model, not to choose tokens.
# num_ctx is normalised to one value per model, rounded up (see agent/runner_context.py), and
# left out too, so that a profile switch does not empty the cache for concrete model names.
RUNNER_ONLY_OPTIONS = frozenset(
    {
        "num_thread",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "use_mlock",
        "num_batch",
        "low_vram",
        "numa",
        "vocab_only",
        "num_ctx",
    }
)
# Request fields that never change the answer.
TRANSPORT_FIELDS = frozenset({"model", "stream", "keep_alive", "stream_options", "user", "n"})

API_BY_PATH = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/v1/chat/completions": "v1chat",
    "/v1/completions": "v1completion",
}
COMPLETION_APIS = ("generate", "v1completion")
SSE_APIS = ("v1chat", "v1completion")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def answer_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS}
    opts = fields.get("options")
    if isinstance(opts, dict):
        kept = {k: v for k, v in opts.items() if k not in RUNNER_ONLY_OPTIONS}
        if kept:
            fields["options"] = kept
        else:
            del fields["options"]
    return fields


def digest(*parts: Any) -> str:
    return hashlib.blake2b(_canonical(parts), digest_size=20).hexdigest()


def request_key(api: str, model: str, body: dict[str, Any]) -> str:
    return f"{api}:{digest(api, model, answer_fields(body))}"


def embedding_key(model: str, text: str, params: dict[str, Any]) -> str:
    """One input of an embedding request (truncate/dimensions/options change the vector)."""
    return f"emb:{digest(model, text, params)}"


def is_deterministic(api: str, body: dict[str, Any]) -> bool:
    opts = body.get("options") if isinstance(body.get("options"), dict) else {}
    temperature = body.get("temperature", (opts or {}).get("temperature"))
    seed = body.get("seed", (opts or {}).get("seed"))
    return temperature == 0 or seed is not None


def cacheable(api: str, body: dict[str, Any], chat_mode: str) -> bool:
    """Completions are cached; chat follows [cache] chat (always / deterministic / never)."""
    if api == "generate":
        # An empty prompt only loads or unloads the model: that is not an answer.
        return bool(body.get("prompt")) or bool(body.get("images"))
    if api == "v1completion":
        return bool(body.get("prompt"))
    if chat_mode == "always":
        return True
    if chat_mode == "never":
        return False
    return is_deterministic(api, body)
