"""`python -m bench --real`, threads part: why powergate asks for half the cores while the CPU is busy.

The real model server (llama-cpp-python + Gemma 3 270M) started with all cores (what
`num_thread` auto gives on this 2-core machine) and with half of them (what powergate's
policy asks Ollama for while the CPU is busy), each on a quiet machine and while another
process keeps one core busy (a build, Docker, a test run). Each request is a 1,500-character
window of a real source file, made unique at its first line so the server cannot reuse an
earlier prompt's state, streamed: the time to the first token is the prompt evaluation, the
rest the generation. Medians over REPEATS requests per setting.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.real import SOURCE_MODULE
from tests.real.server import MODEL_ALIAS, SERVER_THREADS, RealLlamaServer, model_file

REPEATS = 5  # requests per setting
WINDOW = 1500  # characters of prompt (an editor's window)
GEN_TOKENS = 32  # tokens generated per request
TIMEOUT_S = 300.0
HOG = "while True: pass"  # one core kept busy by another process


def _one(c: httpx.Client, url: str, prompt: str) -> tuple[float, float, int, int]:
    """(seconds to the first token, seconds after it, prompt tokens, generated pieces)."""
    t0 = time.perf_counter()
    first = 0.0
    pieces = 0
    body = {"model": MODEL_ALIAS, "prompt": prompt, "max_tokens": GEN_TOKENS, "temperature": 0, "stream": True}
    with c.stream("POST", url + "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if not first:
                first = time.perf_counter() - t0
            pieces += bool(json.loads(line[6:])["choices"][0].get("text"))
    rest = time.perf_counter() - t0 - first
    prompt_tokens = len(
        c.post(url + "/extras/tokenize", json={"input": prompt, "model": MODEL_ALIAS}).json().get("tokens", [])
    )
    return first, rest, prompt_tokens, pieces


def measure(threads: int, loaded: bool, text: str, seed: int) -> dict[str, Any]:
    # Ollama's num_thread sets both the generation and the prompt (batch) threads;
    # llama-cpp-python takes them separately and would use all cores for prompts
    server = RealLlamaServer(model_file(), threads=threads, extra_args=("--n_threads_batch", str(threads)))
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if loaded else None
    prompt_rates: list[float] = []
    gen_rates: list[float] = []
    try:
        with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as c:
            _one(c, server.url, "# warm up\n" + text[:200])
            for i in range(REPEATS):
                start = (seed * 7919 + i * 1543) % (len(text) - WINDOW)
                prompt = f"# request {seed}-{i}\n" + text[start : start + WINDOW]
                first, rest, ptoks, pieces = _one(c, server.url, prompt)
                prompt_rates.append(ptoks / first)
                if pieces > 1 and rest > 0:
                    gen_rates.append((pieces - 1) / rest)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        server.stop()
    return {
        "threads": threads,
        "background_load": loaded,
        "prompt_tok_s": round(statistics.median(prompt_rates), 1),
        "generate_tok_s": round(statistics.median(gen_rates), 1) if gen_rates else None,
        "requests": REPEATS,
    }


def run() -> list[dict[str, Any]]:
    text = Path(SOURCE_MODULE.__file__ or "").read_text(encoding="utf-8")
    half = max(1, SERVER_THREADS // 2)
    rows = []
    for n, (threads, loaded) in enumerate(
        ((SERVER_THREADS, False), (SERVER_THREADS, True), (half, False), (half, True))
    ):
        rows.append(measure(threads, loaded, text, seed=n))
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        load = "one core busy elsewhere" if r["background_load"] else "quiet"
        print(
            f"{'model threads ' + str(r['threads']) + ', ' + load:<42} prompt {r['prompt_tok_s']:>7} tok/s   "
            f"generation {r['generate_tok_s']} tok/s"
        )


if __name__ == "__main__":
    print_rows(run())
