"""Scenarios: cache hits from memory and from disk, typeahead on a typing trace,
and an embedding re-index, each against a direct call to the simulated Ollama."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import interleave, powergate, summary_ms

MODEL = "qwen2.5-coder:1.5b"
EMBED = "nomic-embed-text"
FIM = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"


def _gen(i: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "prompt": f"def f{i}(x):\n    ",
        "suffix": "\n",
        "stream": False,
        "options": {"num_predict": 16, "temperature": 0},
    }


def _timed(c: httpx.Client, url: str, body: dict[str, Any], expect: str | None = None) -> float:
    t0 = time.perf_counter()
    r = c.post(url, json=body)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    if expect is not None and r.headers.get("x-powergate-cache") != expect:
        raise RuntimeError(f"expected {expect}, got {r.headers.get('x-powergate-cache')}")
    return dt


def memory_hits(direct: str, gateway: str, n: int) -> dict[str, Any]:
    with httpx.Client(timeout=30, trust_env=False) as c:
        c.post(gateway + "/api/generate", json=_gen(0))
        res = interleave(
            n,
            {
                "direct": lambda i: _timed(c, direct + "/api/generate", _gen(0)),
                "powergate": lambda i: _timed(c, gateway + "/api/generate", _gen(0), "hit-memory"),
            },
        )
    out = {k: summary_ms(v) for k, v in res.items()}
    out["speedup_p50"] = round(out["direct"]["p50_ms"] / out["powergate"]["p50_ms"], 2)
    return out


def disk_hits(direct: str, n: int, data_dir: Path) -> dict[str, Any]:
    """Fill the disk tier with one gateway, restart it on the same data dir, read each key once."""
    with powergate(direct, data_dir=data_dir) as first, httpx.Client(timeout=30, trust_env=False) as c:
        for i in range(n):
            c.post(first.url + "/api/generate", json=_gen(1000 + i))
        time.sleep(0.5)  # background disk writes
    with powergate(direct, data_dir=data_dir) as second, httpx.Client(timeout=30, trust_env=False) as c:
        res = interleave(
            n,
            {
                "direct": lambda i: _timed(c, direct + "/api/generate", _gen(1000 + i)),
                "powergate": lambda i: _timed(c, second.url + "/api/generate", _gen(1000 + i), "hit-disk"),
            },
            warmup=0,
        )
    out = {k: summary_ms(v) for k, v in res.items()}
    out["speedup_p50"] = round(out["direct"]["p50_ms"] / out["powergate"]["p50_ms"], 2)
    return out


SOURCE = """def parse_config(path):
    with open(path) as fh:
        data = json.load(fh)
    for key, value in data.items():
        if key not in ALLOWED:
            raise ValueError(f"unknown key {key}")
    return Config(**data)
"""


def typing_trace(seed: int, steps: int) -> Iterator[tuple[str, str]]:
    """(action, text): the editor's view of a user typing with suggestions.

    After each suggestion the user either keeps typing along it (accepting it
    character by character: the suggestion was right) with probability 0.6, or
    types their own code. Editors send a request every 1-3 keystrokes."""
    rng = random.Random(seed)
    for _ in range(steps):
        if rng.random() < 0.6:
            yield "follow", str(rng.randint(1, 3))
        else:
            yield "own", SOURCE[rng.randint(0, len(SOURCE) - 4) :][: rng.randint(1, 3)]


def typeahead(gateway: str, steps: int) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    latencies: dict[str, list[float]] = {}
    prefix = "import json\n\n"
    suffix = "\n\nif __name__ == '__main__':\n    main()\n"
    with httpx.Client(timeout=30, trust_env=False) as c:
        suggestion = ""
        for action, arg in typing_trace(7, steps):
            if action == "follow" and suggestion:
                k = min(int(arg), len(suggestion))
                prefix += suggestion[:k]
            else:
                prefix += arg
            body = {
                "model": MODEL,
                "raw": True,
                "stream": False,
                "prompt": FIM.format(prefix=prefix, suffix=suffix),
                "options": {"num_predict": 12, "temperature": 0},
            }
            t0 = time.perf_counter()
            r = c.post(gateway + "/api/generate", json=body)
            dt = time.perf_counter() - t0
            outcome = r.headers.get("x-powergate-cache", "?")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            latencies.setdefault(outcome, []).append(dt)
            suggestion = r.json()["response"]
    n = sum(outcomes.values())
    return {
        "requests": n,
        "outcomes": outcomes,
        "typeahead_hit_rate": round(outcomes.get("typeahead", 0) / n, 3),
        "latency": {k: summary_ms(v) for k, v in latencies.items()},
    }


def reindex(direct: str, gateway: str, chunks: int, batch: int = 32) -> dict[str, Any]:
    texts = [f"chunk {i}: def handler_{i}(request):\n    return respond({i})" for i in range(chunks)]
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]

    def run(base: str, c: httpx.Client) -> tuple[float, int]:
        t0 = time.perf_counter()
        cached = 0
        for b in batches:
            r = c.post(base + "/api/embed", json={"model": EMBED, "input": b})
            if r.status_code != 200:
                raise RuntimeError(r.text)
            got = r.headers.get("x-powergate-cache-inputs")
            if got:
                cached += int(got.split("/")[0])
        return time.perf_counter() - t0, cached

    with httpx.Client(timeout=120, trust_env=False) as c:
        first_pg, _ = run(gateway, c)
        direct_s, _ = run(direct, c)
        second_pg, cached = run(gateway, c)
    return {
        "chunks": chunks,
        "direct_s": round(direct_s, 3),
        "powergate_first_pass_s": round(first_pg, 3),
        "powergate_second_pass_s": round(second_pg, 3),
        "second_pass_cached_inputs": cached,
        "speedup_second_pass": round(direct_s / second_pg, 1),
    }
