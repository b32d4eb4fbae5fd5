"""`powergate doctor`: is everything in place for a fast editor experience?"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx

from agent.cli_support import agent_url_for
from agent.config import Settings
from agent.profiles import JOB_TIERS
from agent.services.lightrag_doctor import check_lightrag

CHECK_TIMEOUT = 2.0  # seconds per check


def _port_state(settings: Settings) -> str:
    s = settings.server
    with socket.socket() as sock:
        sock.settimeout(CHECK_TIMEOUT)
        host = "127.0.0.1" if s.host in ("0.0.0.0", "") else s.host
        if sock.connect_ex((host, s.port)) == 0:
            return "in use"
    return "free"


def run_doctor(settings: Settings, out: Callable[[str], None]) -> int:
    ok = True
    out(
        f"config: {settings.config_file} ({'found, valid' if settings.config_file_exists else 'not present: built-in defaults'})"
    )
    url = agent_url_for(settings)
    state = _port_state(settings)
    if state == "in use":
        try:
            r = httpx.get(
                f"{url}/agent/status",
                timeout=CHECK_TIMEOUT,
                trust_env=False,
                headers={"X-Powergate-Token": settings.server.control_token} if settings.server.control_token else None,
            )
            running = r.status_code == 200 and "profile" in r.json()
        except (httpx.HTTPError, ValueError):
            running = False
        out(
            f"port {settings.server.port}: {'powergate is running there' if running else 'IN USE by another program (use --port)'}"
        )
        ok = ok and running
    else:
        out(f"port {settings.server.port}: free (start the agent with `powergate run`)")

    wanted = sorted(
        {
            settings.models.for_tier(getattr(p, job))
            for p in settings.profiles.values()
            for job in ("autocomplete", "chat", "embed")
        }
        | {settings.models.for_tier(t) for t in JOB_TIERS}
    )
    for up in settings.upstreams:
        kind = up.kind if up.kind != "auto" else asyncio.run(_probe(up.url))
        if kind in ("llamacpp", "openai"):
            ok = _check_openai_kind(up.url, kind, wanted, out) and ok
            continue
        try:
            v = httpx.get(f"{up.url}/api/version", timeout=CHECK_TIMEOUT, trust_env=False).json().get("version", "?")
            tags = httpx.get(f"{up.url}/api/tags", timeout=CHECK_TIMEOUT, trust_env=False).json().get("models", [])
        except (httpx.HTTPError, ValueError) as exc:
            ok = False
            out(
                f"upstream {up.url}: NOT reachable ({type(exc).__name__}). Start Ollama (`ollama serve` or the app) or set --upstream."
            )
            continue
        have = {m.get("name", "") for m in tags} | {m.get("model", "") for m in tags}
        have |= {n[:-7] for n in have if n.endswith(":latest")}
        out(f"upstream {up.url}: Ollama {v}, {len(tags)} models (kind ollama)")
        missing = [m for m in wanted if m not in have and f"{m}:latest" not in have]
        for m in missing:
            out(f"  missing model {m}: run `ollama pull {m}`")
        ok = ok and not missing

    if settings.cache.redis_url:
        try:
            import redis

            redis.Redis.from_url(
                settings.cache.redis_url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
            ).ping()
            out(f"redis {settings.cache.redis_url}: reachable")
        except Exception as exc:  # any redis failure is a finding, not a crash
            ok = False
            out(f"redis {settings.cache.redis_url}: NOT reachable ({type(exc).__name__}); powergate works without it")

    ok = check_lightrag(settings, url, out) and ok

    tiers = settings.models
    out("\nContinue (~/.continue/config.yaml):")
    out(
        "models:\n"
        f"  - name: powergate autocomplete\n    provider: ollama\n    model: autocomplete\n    apiBase: {url}\n    roles: [autocomplete]\n"
        f"  - name: powergate chat\n    provider: ollama\n    model: chat\n    apiBase: {url}\n    roles: [chat, edit]\n"
        f"  - name: powergate embed\n    provider: ollama\n    model: embed\n    apiBase: {url}\n    roles: [embed]"
    )
    out("\nTwinny (VS Code settings, provider Ollama):")
    host, _, port = url.removeprefix("http://").rpartition(":")
    out(
        json.dumps(
            {
                "twinny.ollamaHostname": host,
                "twinny.ollamaApiPort": int(port),
                "twinny.fimModelName": "autocomplete",
                "twinny.chatModelName": "chat",
            },
            indent=2,
        )
    )
    out(f"\nollama Python client: ollama.Client(host='{url}')   # or OLLAMA_HOST={url}")
    out(f"OpenAI-compatible clients: base_url='{url}/v1', any api_key")
    out(f"\nmodels by tier: small={tiers.small} medium={tiers.medium} large={tiers.large} embed={tiers.embed}")
    out("\nall checks passed" if ok else "\nsome checks failed (see above)")
    return 0 if ok else 1


async def _probe(url: str) -> str | None:
    from agent.upstreams.pool import probe

    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        return await probe(client)


def _check_openai_kind(url: str, kind: str, wanted: list[str], out: Callable[[str], None]) -> bool:
    """A llama.cpp or OpenAI-compatible upstream: reachable, and which of our models it serves."""
    from agent.upstreams.openai import OpenAIUpstream

    try:
        data = httpx.get(f"{url}/v1/models", timeout=CHECK_TIMEOUT, trust_env=False).json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        out(f"upstream {url}: NOT reachable ({type(exc).__name__}). Start the server or set --upstream.")
        return False
    ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
    label = "llama.cpp server" if kind == "llamacpp" else "OpenAI-compatible server"
    out(f"upstream {url}: {label} (kind {kind}), {len(ids)} models: {', '.join(ids)}")
    missing = [m for m in wanted if not any(OpenAIUpstream._matches(m, i) for i in ids)]
    for m in missing:
        out(f"  model {m} is not served there: load it in the server, or name a served model in [models]")
    return not missing
