"""Several model hosts: powergate's routing against round-robin, highest-weight failover
(powergate's behaviour before hosts were scored) and LiteLLM's router (`least-busy`),
on one mixed workload, in one run.

Three simulated Ollama hosts, each in its own process, fresh for every contender so
that each starts with the same models in memory:

- `laptop`:  the developer's own machine (loopback, so `local`), slow tokens and
             loads, the suggestion model loaded, listed first (so highest-weight
             failover, all weights being equal, sends it everything);
- `desktop`: a GPU box on the LAN (`local = false`), fast, the chat model loaded;
- `teambox`: a shared server (`local = false`), medium speed, nothing loaded.

The workload, the same for every contender, on the OpenAI endpoints all of them
speak: an editor asking for a suggestion every SUGGEST_EVERY_S (small model), two
chat clients (medium model) and an indexing batch (embeddings), all at once. We
measure the suggestions' p95 latency and the time until all chat and indexing work
is done, plus failed requests. The machine is on AC (a scripted power file): the
battery offload is a routing rule with its own test, not a speed contest.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, Proc, free_port, pct, sim_ollama, wait_http

SMALL = "qwen2.5-coder:1.5b"
MEDIUM = "qwen2.5-coder:7b"
EMBED = "nomic-embed-text:latest"
SUGGEST_EVERY_S = 0.25  # an editor's suggestion rhythm while typing
SUGGEST_TOKENS = 16
CHAT_TOKENS = 96
EMBED_BATCH = 16  # chunks per indexing request
REQUEST_TIMEOUT_S = 120.0
CONTENDERS = ("powergate", "round-robin", "weight-failover", "litellm-least-busy")
STRATEGY = {"powergate": "score", "round-robin": "round-robin", "weight-failover": "weight"}


@dataclass(frozen=True)
class HostSpec:
    name: str
    token_delay_s: float
    prompt_delay_s: float
    load_time_s: float
    preload: tuple[str, ...]
    weight: int
    local: bool


HOSTS = (
    HostSpec("laptop", 0.012, 0.03, 1.5, (SMALL,), 1, True),
    HostSpec("desktop", 0.003, 0.01, 0.8, (MEDIUM, EMBED), 1, False),
    HostSpec("teambox", 0.006, 0.02, 1.0, (), 1, False),
)


@contextmanager
def sim_host(spec: HostSpec) -> Iterator[Proc]:
    flags = ["--token-delay", str(spec.token_delay_s), "--prompt-delay", str(spec.prompt_delay_s)]
    flags += ["--load-time", str(spec.load_time_s)]
    for m in spec.preload:
        flags += ["--preload", m]
    with sim_ollama(module="bench.simhost", flags=flags) as proc:
        yield proc


def agent_config(urls: dict[str, str], power_file: Path) -> str:
    lines = []
    for spec in HOSTS:
        lines += [
            "[[upstream]]",
            f'url = "{urls[spec.name]}"',
            f"weight = {spec.weight}",
            f"local = {'true' if spec.local else 'false'}",
        ]
    lines += ["[power]", f'source = "file:{power_file.as_posix()}"']  # the profile's own interval
    return "\n".join(lines) + "\n"


@contextmanager
def routed_powergate(urls: dict[str, str], strategy: str) -> Iterator[Proc]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pg-bench-hosts-") as d:
        power = Path(d) / "power.json"
        power.write_text(json.dumps({"plugged": True, "percent": 90, "cpu_percent": 5}))
        cfg = Path(d) / "config.toml"
        cfg.write_text(agent_config(urls, power))
        args = [
            sys.executable,
            "-m",
            "bench.routed_agent",
            "--config",
            str(cfg),
            "--data-dir",
            str(Path(d) / "data"),
            "--port",
            str(port),
            "--strategy",
            strategy,
        ]
        env = dict(os.environ, POWERGATE_CONFIG=str(cfg))
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = Proc(f"http://127.0.0.1:{port}", p)
        try:
            wait_http(proc.url + "/agent/status")
            # the first background check (model lists, loaded models) before the clock starts
            httpx.get(proc.url + "/agent/status?check=1", timeout=30, trust_env=False)
            yield proc
        finally:
            proc.stop()


@contextmanager
def litellm_router(urls: dict[str, str]) -> Iterator[Proc]:
    """LiteLLM's proxy with one deployment per host and model, routing `least-busy`."""
    from bench.litellm import MASTER_KEY, ensure_installed

    exe = ensure_installed()
    port = free_port()
    lines = ["model_list:"]
    for spec in HOSTS:
        for model, prefix in ((SMALL, "ollama"), (MEDIUM, "ollama_chat"), (EMBED, "ollama")):
            lines += [
                f"  - model_name: {model}",
                "    litellm_params:",
                f"      model: {prefix}/{model}",
                f"      api_base: {urls[spec.name]}",
            ]
    lines += [
        "router_settings:",
        "  routing_strategy: least-busy",
        "litellm_settings:",
        "  telemetry: false",
        "  drop_params: true",
        "  num_retries: 1",
        "general_settings:",
        f"  master_key: {MASTER_KEY}",
    ]
    with tempfile.TemporaryDirectory(prefix="litellm-hosts-") as d:
        cfg = Path(d) / "config.yaml"
        cfg.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_DOCS="True")
        p = subprocess.Popen(
            [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = Proc(f"http://127.0.0.1:{port}", p)
        try:
            wait_http(proc.url + "/health/liveliness", timeout=120)
            yield proc
        finally:
            proc.stop()


async def workload(base: str, chats: int, batches: int, headers: dict[str, str]) -> dict[str, Any]:
    """The mixed workload against one contender; returns its figures."""
    suggest_s: list[float] = []
    errors: Counter[str] = Counter()
    served_by: dict[str, Counter[str]] = {"suggest": Counter(), "chat": Counter(), "index": Counter()}
    run = time.time_ns()

    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, trust_env=False, headers=headers) as client:

        async def post(job: str, path: str, body: dict[str, Any]) -> bool:
            try:
                r = await client.post(base + path, json=body)
            except httpx.HTTPError as exc:
                errors[f"{job}: {type(exc).__name__}"] += 1
                return False
            if r.status_code != 200:
                errors[f"{job}: {r.status_code}"] += 1
                return False
            # powergate names the host; LiteLLM's proxy names the deployment's api_base
            host = r.headers.get("x-powergate-upstream") or r.headers.get("x-litellm-model-api-base", "?")
            served_by[job][host] += 1
            return True

        async def chat_client(c: int) -> None:
            for i in range(chats):
                messages = [{"role": "user", "content": f"explain part {c}-{i} of the design {run}"}]
                await post(
                    "chat", "/v1/chat/completions", {"model": MEDIUM, "max_tokens": CHAT_TOKENS, "messages": messages}
                )

        async def indexer() -> None:
            for i in range(batches):
                chunks = [f"def chunk_{i}_{j}(): return {run}" for j in range(EMBED_BATCH)]
                await post("index", "/v1/embeddings", {"model": EMBED, "input": chunks})

        stop = asyncio.Event()

        async def editor() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                tick = time.perf_counter()
                prompt = f"def handler_{i}_{run}(request):\n    "
                if await post(
                    "suggest", "/v1/completions", {"model": SMALL, "prompt": prompt, "max_tokens": SUGGEST_TOKENS}
                ):
                    suggest_s.append(time.perf_counter() - tick)
                await asyncio.sleep(max(0.0, SUGGEST_EVERY_S - (time.perf_counter() - tick)))

        started = time.perf_counter()
        typing = asyncio.ensure_future(editor())
        await asyncio.gather(chat_client(0), chat_client(1), indexer())
        total = time.perf_counter() - started
        stop.set()
        await typing
    return {
        "suggestions": len(suggest_s),
        "suggest_p50_ms": round(pct(suggest_s, 50) * 1000, 1),
        "suggest_p95_ms": round(pct(suggest_s, 95) * 1000, 1),
        "total_s": round(total, 2),
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "served_by": {job: dict(c) for job, c in served_by.items()},
    }


def run(quick: bool = False, with_litellm: bool = True) -> dict[str, Any]:
    """Every contender on fresh hosts, one after the other, the same workload."""
    chats, batches = (3, 8) if quick else (12, 40)
    out: dict[str, Any] = {
        "hosts": [spec.__dict__ for spec in HOSTS],
        "workload": {
            "suggest_every_s": SUGGEST_EVERY_S,
            "chat_clients": 2,
            "chats_each": chats,
            "index_batches": batches,
            "embed_batch": EMBED_BATCH,
        },
    }
    contenders = CONTENDERS if with_litellm else CONTENDERS[:3]
    for name in contenders:
        with ExitStack() as stack:
            urls = {spec.name: stack.enter_context(sim_host(spec)).url for spec in HOSTS}
            names = {url: n for n, url in urls.items()}
            if name in STRATEGY:
                front = stack.enter_context(routed_powergate(urls, STRATEGY[name]))
                headers: dict[str, str] = {}
            else:
                try:
                    front = stack.enter_context(litellm_router(urls))
                except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                    out[name] = {"skipped": f"LiteLLM could not run here: {exc}"}
                    continue
                from bench.litellm import MASTER_KEY

                headers = {"Authorization": f"Bearer {MASTER_KEY}"}
            figures = asyncio.run(workload(front.url, chats, batches, headers))
        figures["served_by"] = {
            job: {names.get(u, u): n for u, n in by.items()} for job, by in figures["served_by"].items()
        }
        out[name] = figures
    return out


def print_rows(out: dict[str, Any]) -> None:
    for name in CONTENDERS:
        r = out.get(name)
        if r is None:
            continue
        if "skipped" in r:
            print(f"{'hosts ' + name:<34} skipped: {r['skipped']}")
            continue
        print(
            f"{'hosts ' + name:<34} suggestions p95 {r['suggest_p95_ms']:>7.1f} ms (p50 {r['suggest_p50_ms']:.1f})   "
            f"all work done in {r['total_s']:>6.2f} s   failed {r['failed']}   {r['served_by']}"
        )


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv, with_litellm="--no-litellm" not in sys.argv)
    print_rows(result)
