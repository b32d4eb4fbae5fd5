"""`powergate bench`: what powergate gains on *your* machine, against your Ollama.

Replays a short built-in editing session (FIM completions over a sample source
file: typing, accepting suggestions, pauses) and an embedding pass over the same
file, once straight to Ollama and once through the running agent, and prints
suggestion latency p50/p95 both ways, the share under 100 ms and the upstream
calls the agent saved.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.config import Settings
from agent.metrics import percentile

SAMPLE = '''import json
from pathlib import Path


def load_settings(path: Path) -> dict:
    """Read the settings file, falling back to defaults."""
    if not path.exists():
        return {}
    with path.open() as fh:
        data = json.load(fh)
    for key in list(data):
        if key.startswith("_"):
            del data[key]
    return data


class Cache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items = {}

    def get(self, key):
        return self.items.get(key)

    def put(self, key, value):
        if len(self.items) >= self.size:
            self.items.pop(next(iter(self.items)))
        self.items[key] = value
'''
SUFFIX = "\n\nif __name__ == '__main__':\n    print(load_settings(Path('settings.json')))\n"
TIMEOUT = 120.0  # seconds per request: a cold model load can take a while
PAUSE_S = (0.2, 0.8)  # the user reads a suggestion before acting


class BenchError(Exception):
    """Something the user must fix first (exit code 1)."""


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    embed_s: float = 0.0
    embed_upstream_inputs: int = 0

    def summary(self) -> dict[str, Any]:
        s = self.latencies

        def pct(q: float) -> float:
            v = percentile(s, q)
            return float("nan") if v is None else v * 1000

        return {
            "suggestions": len(s),
            "p50_ms": round(pct(50), 1),
            "p95_ms": round(pct(95), 1),
            "under_100ms": round(sum(1 for x in s if x < 0.1) / len(s), 3) if s else 0.0,
            "outcomes": dict(self.outcomes),
            "embed_s": round(self.embed_s, 3),
        }


def _check_upstream(url: str, model: str, embed_model: str) -> None:
    try:
        tags = httpx.get(f"{url}/api/tags", timeout=5, trust_env=False).json().get("models", [])
    except (httpx.HTTPError, ValueError):
        raise BenchError(
            f"Ollama is not reachable at {url}. Start it (`ollama serve` or the Ollama app) and try again."
        ) from None
    have = {m.get("name", "") for m in tags} | {m.get("model", "") for m in tags}
    have |= {n.removesuffix(":latest") for n in have}
    for m in (model, embed_model):
        if m not in have:
            raise BenchError(f"Ollama at {url} does not have {m}. Run `ollama pull {m}` and try again.")


def _session(client: httpx.Client, base: str, model: str, steps: int, seed: int, run: Run, pause: bool) -> None:
    rng = random.Random(seed)
    text = SAMPLE
    cut = rng.randint(len(text) // 4, len(text) // 2)
    prefix = text[:cut]
    suggestion = ""
    for _ in range(steps):
        roll = rng.random()
        if suggestion and roll < 0.5:
            prefix += suggestion  # accepted with Tab
        elif suggestion and roll < 0.8:
            prefix += suggestion[: rng.randint(1, min(4, len(suggestion)))]  # typed along it
        else:
            prefix += text[len(prefix) % len(text) :][: rng.randint(1, 5)]  # typed their own code
        body = {
            "model": model,
            "prompt": prefix,
            "suffix": SUFFIX,
            "stream": False,
            "options": {"num_predict": 24, "temperature": 0},
        }
        t0 = time.perf_counter()
        r = client.post(f"{base}/api/generate", json=body)
        run.latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise BenchError(f"{base} answered {r.status_code}: {r.text[:200]}")
        outcome = r.headers.get("x-powergate-cache", "direct")
        run.outcomes[outcome] = run.outcomes.get(outcome, 0) + 1
        suggestion = r.json().get("response", "")
        if pause:
            time.sleep(rng.uniform(*PAUSE_S))


def _embed(client: httpx.Client, base: str, model: str, run: Run) -> None:
    chunks = [c for c in SAMPLE.split("\n\n") if c.strip()] * 4
    t0 = time.perf_counter()
    r = client.post(f"{base}/api/embed", json={"model": model, "input": chunks})
    run.embed_s = time.perf_counter() - t0
    if r.status_code != 200:
        raise BenchError(f"{base} answered {r.status_code} to an embedding request: {r.text[:200]}")
    got = r.headers.get("x-powergate-cache-inputs")
    run.embed_upstream_inputs = len(chunks) - int(got.split("/")[0]) if got else len(chunks)


def run_bench(
    settings: Settings,
    agent_url: str,
    out: Callable[[str], None],
    model: str | None = None,
    steps: int = 30,
    pause: bool = True,
) -> dict[str, Any]:
    upstream = settings.upstreams[0].url
    headers = {"X-Powergate-Token": settings.server.control_token} if settings.server.control_token else {}
    try:
        prof = httpx.get(f"{agent_url}/agent/profile", timeout=5, trust_env=False, headers=headers).json()
    except (httpx.HTTPError, ValueError):
        raise BenchError(
            f"powergate is not running on {agent_url}; start it with `powergate run` and try again."
        ) from None
    model = model or settings.models.for_tier(prof["settings"]["autocomplete"])
    embed_model = settings.models.for_tier(prof["settings"]["embed"])
    _check_upstream(upstream, model, embed_model)
    out(f"powergate bench: {steps} suggestions with {model} and an embedding pass with {embed_model}")
    out(f"  direct: {upstream}   through powergate: {agent_url} (profile {prof['profile']})")
    runs = {"direct": Run(), "powergate": Run()}
    # The figures are for the profile named above: pin it for the whole run (the auto policy
    # could switch on a charger change or a CPU spike), and give the agent back its mode after.
    control = httpx.Client(base_url=agent_url, timeout=5, trust_env=False, headers=headers)
    control.put("/agent/profile", json={"profile": prof["profile"], "mode": "manual", "source": "bench"})
    try:
        _compare(upstream, agent_url, model, embed_model, steps, pause, runs, out)
        after = control.get("/agent/profile").json()
    finally:
        if prof["mode"] == "auto":
            control.put("/agent/profile", json={"mode": "auto", "source": "bench"})
        elif not prof.get("pinned"):
            control.put("/agent/profile", json={"profile": prof["profile"], "source": "bench"})
        control.close()
    if after.get("profile") != prof["profile"]:
        out(f"  note: the profile changed to {after.get('profile')} during the run (someone switched it)")
    d, g = runs["direct"].summary(), runs["powergate"].summary()
    saved = sum(v for k, v in g["outcomes"].items() if k.startswith("hit") or k in ("typeahead", "coalesced"))
    out("")
    out(f"{'':<28}{'direct':>12}{'powergate':>12}")
    out(f"{'suggestion p50':<28}{d['p50_ms']:>10.1f}ms{g['p50_ms']:>10.1f}ms")
    out(f"{'suggestion p95':<28}{d['p95_ms']:>10.1f}ms{g['p95_ms']:>10.1f}ms")
    out(f"{'suggestions under 100 ms':<28}{d['under_100ms']:>12.0%}{g['under_100ms']:>12.0%}")
    out(f"{'embedding re-index':<28}{d['embed_s'] * 1000:>10.1f}ms{g['embed_s'] * 1000:>10.1f}ms")
    out(
        f"upstream calls saved by powergate: {saved} of {g['suggestions']} suggestions "
        f"({', '.join(f'{k} {v}' for k, v in sorted(g['outcomes'].items()))}); "
        f"embedding inputs sent to Ollama on the second pass: {runs['powergate'].embed_upstream_inputs}"
    )
    return {"direct": d, "powergate": g, "saved": saved, "model": model}


def _compare(
    upstream: str,
    agent_url: str,
    model: str,
    embed_model: str,
    steps: int,
    pause: bool,
    runs: dict[str, Run],
    out: Callable[[str], None],
) -> None:
    """The same editing session and embedding passes, directly and through the agent."""
    with httpx.Client(timeout=TIMEOUT, trust_env=False, headers={"Cache-Control": "no-store"}) as warm:
        warm.post(
            f"{upstream}/api/generate", json={"model": model, "prompt": "", "keep_alive": "10m"}
        )  # load once, for both
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        for name, base in (("direct", upstream), ("powergate", agent_url)):
            out(f"  running {name}...")
            _session(c, base, model, steps, seed=7, run=runs[name], pause=pause)
            _embed(c, base, embed_model, runs[name])
            _embed(c, base, embed_model, runs[name])  # a second pass: an unchanged project re-indexed
