"""`powergate doctor` for a configured LightRAG: reachable, version, where its model calls go.

Read from LightRAG's own /health (its configuration, per-role LLM settings and
versions), compared with what powergate would do with its calls, and the lines to
paste into LightRAG's .env so that its indexing is background work through powergate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.config import Settings
from agent.profiles import Profile

CHECK_TIMEOUT = 5.0  # seconds: /health reads LightRAG's storages
RECOMMENDED_LLM_TIMEOUT_S = 900  # a bulk call may wait behind the editor's work in powergate's queue
RECOMMENDED_EMBEDDING_TIMEOUT_S = 300
RECOMMENDED_MAX_ASYNC = 4  # powergate queues the rest; more only lengthens its queue
DEFAULT_NUM_CTX = 4096  # tokens, for the .env line when no balanced profile exists
BACKGROUND_ROLES = ("extract",)  # LightRAG roles that are indexing work: the bulk lane
WAITED_FOR_ROLES = ("query", "keyword")  # someone waits for these: the chat lane


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    if host in ("localhost", "::1", "0.0.0.0"):
        host = "127.0.0.1"
    return host, parts.port or (443 if parts.scheme == "https" else 80), parts.path.rstrip("/")


def context_sent(profile: Profile, asked: int) -> int:
    """The num_ctx Ollama gets for a client asking `asked` tokens of context in `profile`."""
    cap = getattr(profile, "num_ctx_max", None)
    if cap is None:
        return profile.num_ctx  # the profile's num_ctx, whatever the client asked
    # rounded up to what the client asked, within the profile's cap (0: none)
    wanted = max(asked, profile.num_ctx)
    return min(wanted, int(cap)) if int(cap) > 0 else wanted


def _table(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def env_lines(agent_url: str, num_ctx: int) -> list[str]:
    """What to paste into LightRAG's .env (comments say why)."""
    return [
        "LLM_BINDING=ollama",
        f"LLM_BINDING_HOST={agent_url}/lane/bulk          # extraction and summaries: background work",
        f"QUERY_LLM_BINDING_HOST={agent_url}/lane/chat    # answers somebody waits for",
        f"KEYWORD_LLM_BINDING_HOST={agent_url}/lane/chat",
        "EMBEDDING_BINDING=ollama",
        f"EMBEDDING_BINDING_HOST={agent_url}/lane/bulk    # embeddings cached per input by powergate",
        "ENABLE_LLM_CACHE=false   # LightRAG's answer cache ignores the documents; powergate's does not",
        f"OLLAMA_LLM_NUM_CTX={num_ctx}   # what powergate sends in the profile in force",
        f"MAX_ASYNC={RECOMMENDED_MAX_ASYNC}",
        f"LLM_TIMEOUT={RECOMMENDED_LLM_TIMEOUT_S}   # calls queue in powergate behind the editor instead of failing",
        f"EMBEDDING_TIMEOUT={RECOMMENDED_EMBEDDING_TIMEOUT_S}",
    ]


def findings(health: dict[str, Any], agent_url: str, settings: Settings) -> tuple[list[str], list[str]]:
    """(what is fine, what to fix) for one /health document."""
    good: list[str] = []
    bad: list[str] = []
    conf = _table(health.get("configuration"))
    me = _endpoint(agent_url)[:2]
    roles = _table(conf.get("role_llm_config"))
    hosts: dict[str, str] = {"embeddings": str(conf.get("embedding_binding_host") or "")}
    for role, rc in roles.items():
        if isinstance(rc, dict):
            hosts[str(role)] = str(rc.get("host") or "")
    hosts.setdefault("extract", str(conf.get("llm_binding_host") or ""))
    for role, host in sorted(hosts.items()):
        ep = _endpoint(host)
        lane = ep[2]
        if ep[:2] != me:
            bad.append(f"{role} calls go to {host or '?'}, not through powergate: they compete with the editor")
        elif role in (*BACKGROUND_ROLES, "embeddings") and lane != "/lane/bulk":
            bad.append(f"{role} calls reach powergate at {host} but not in the bulk lane: use {agent_url}/lane/bulk")
        elif role in WAITED_FOR_ROLES and lane not in ("/lane/chat", "/lane/bulk"):
            bad.append(f"{role} calls reach powergate at {host} without a lane: use {agent_url}/lane/chat")
        else:
            good.append(f"{role} calls go through powergate ({lane or 'no lane'})")
    if conf.get("enable_llm_cache") is True:
        bad.append(
            "ENABLE_LLM_CACHE is on: LightRAG's answer cache ignores the documents (stale answers after an "
            "insert); set it false, powergate caches answers per corpus version and every model call by its prompt"
        )
    asked = {
        int(n)
        for rc in roles.values()
        if isinstance(rc, dict)
        for n in [_table(_table(rc.get("metadata")).get("provider_options")).get("num_ctx")]
        if isinstance(n, int)
    }
    for ctx in sorted(asked):
        short = [f"{p.name} ({context_sent(p, ctx)})" for p in settings.profiles.values() if context_sent(p, ctx) < ctx]
        if short:
            bad.append(
                f"OLLAMA_LLM_NUM_CTX={ctx}, but powergate sends a smaller num_ctx in {', '.join(short)}: prompts "
                "beyond it are cut by Ollama; raise num_ctx in those [profiles.<name>] or lower OLLAMA_LLM_NUM_CTX"
            )
        else:
            good.append(f"OLLAMA_LLM_NUM_CTX={ctx} fits every profile's num_ctx")
    timeout = conf.get("llm_timeout")
    if isinstance(timeout, int) and 0 < timeout < RECOMMENDED_LLM_TIMEOUT_S:
        bad.append(
            f"LLM_TIMEOUT={timeout} s: a call waiting behind the editor in powergate's queue may time out; "
            f"use {RECOMMENDED_LLM_TIMEOUT_S}"
        )
    return good, bad


def check_lightrag(settings: Settings, agent_url: str, out: Callable[[str], None]) -> bool:
    """Print the LightRAG section of `powergate doctor`; False when something needs fixing."""
    lr = settings.lightrag
    if not lr.enabled:
        return True
    headers = {"X-API-Key": lr.api_key} if lr.api_key else {}
    try:
        r = httpx.get(f"{lr.url}/health", headers=headers, timeout=CHECK_TIMEOUT, trust_env=False)
        health = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        out(f"lightrag {lr.url}: NOT reachable ({type(exc).__name__}); start lightrag-server or fix [lightrag] url")
        return False
    if not isinstance(health, dict):
        hint = " (set [lightrag] api_key)" if r.status_code in (401, 403) else ""
        out(f"lightrag {lr.url}: /health answered {r.status_code}{hint}")
        return False
    out(f"lightrag {lr.url}: LightRAG {health.get('core_version', '?')} (API {health.get('api_version', '?')})")
    good, bad = findings(health, agent_url, settings)
    for line in good:
        out(f"  ok: {line}")
    for line in bad:
        out(f"  fix: {line}")
    num_ctx = settings.profile("balanced").num_ctx if "balanced" in settings.profiles else DEFAULT_NUM_CTX
    out("\nLightRAG .env (its model calls through powergate, indexing as background work):")
    for line in env_lines(agent_url, num_ctx):
        out(line)
    return not bad
